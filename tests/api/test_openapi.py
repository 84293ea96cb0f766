"""The OpenAPI document: valid 3.1, generated from the routes, describing every endpoint."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

CONTRACT = [
    ("post", "/api/v1/device/heartbeat"),
    ("post", "/api/v1/device/readings"),
    ("get", "/api/v1/device/commands"),
    ("post", "/api/v1/device/commands/{command_id}/result"),
    ("get", "/api/v1/devices"),
    ("post", "/api/v1/devices"),
    ("get", "/api/v1/devices/{device_id}"),
    ("patch", "/api/v1/devices/{device_id}"),
    ("delete", "/api/v1/devices/{device_id}"),
    ("post", "/api/v1/devices/{device_id}/token"),
    ("get", "/api/v1/devices/{device_id}/readings"),
    ("get", "/api/v1/devices/{device_id}/commands"),
    ("post", "/api/v1/devices/{device_id}/commands"),
    ("get", "/api/v1/schedules"),
    ("post", "/api/v1/schedules"),
    ("get", "/api/v1/schedules/{schedule_id}"),
    ("patch", "/api/v1/schedules/{schedule_id}"),
    ("delete", "/api/v1/schedules/{schedule_id}"),
    ("get", "/api/v1/schedules/{schedule_id}/next"),
    ("get", "/api/v1/commands"),
    ("get", "/api/v1/commands/{command_id}"),
    ("post", "/api/v1/commands/{command_id}/cancel"),
    ("get", "/api/v1/rules"),
    ("post", "/api/v1/rules"),
    ("get", "/api/v1/rules/{rule_id}"),
    ("patch", "/api/v1/rules/{rule_id}"),
    ("delete", "/api/v1/rules/{rule_id}"),
    ("get", "/api/v1/alerts"),
    ("get", "/api/v1/alerts/{alert_id}"),
    ("post", "/api/v1/alerts/{alert_id}/ack"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/healthz"),
]


@pytest.fixture
def doc(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"].startswith("3.1")
    validate(doc)


@pytest.mark.parametrize("method, path", CONTRACT)
def test_document_describes_each_contract_endpoint(doc, method, path):
    assert method in doc["paths"][path]


def test_document_lists_exactly_the_routes_the_app_serves(app, doc):
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<int:(\w+)>", r"{\1}", rule.rule)
            served |= {(m.lower(), path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {
        (m, p) for p, ops in doc["paths"].items() for m in ops if p.startswith("/api/v1/")
    }
    assert documented == served


def test_request_schemas_come_from_the_pydantic_models(doc):
    schema = doc["components"]["schemas"]["ReadingsIn"]
    assert schema["properties"]["readings"]["maxItems"] == 1000
    assert schema["additionalProperties"] is False


def test_device_endpoints_use_the_device_token_scheme(doc):
    operation = doc["paths"]["/api/v1/device/readings"]["post"]
    assert operation["security"] == [{"deviceToken": []}]
    assert {p["name"] for p in operation["parameters"]} == {"Idempotency-Key"}


def test_document_needs_no_credentials(client):
    assert client.get("/api/v1/openapi.json").status_code == 200


def test_every_operation_has_a_tag_the_document_describes(doc):
    described = {tag["name"]: tag.get("description") for tag in doc["tags"]}
    used = {op["tags"][0] for ops in doc["paths"].values() for op in ops.values()}
    assert used == set(described)
    assert {"rules", "alerts", "channels"} <= used
    assert all(described.values())


@pytest.mark.parametrize(
    "method, path, request_schema, response",
    [
        ("post", "/api/v1/rules", "RuleIn", ("201", "RuleOut")),
        ("patch", "/api/v1/rules/{rule_id}", "RulePatch", ("200", "RuleOut")),
        ("get", "/api/v1/rules", None, ("200", "RulePage")),
        ("get", "/api/v1/rules/{rule_id}", None, ("200", "RuleOut")),
        ("delete", "/api/v1/rules/{rule_id}", None, ("204", None)),
        ("get", "/api/v1/alerts", None, ("200", "AlertPage")),
        ("get", "/api/v1/alerts/{alert_id}", None, ("200", "AlertOut")),
        ("post", "/api/v1/alerts/{alert_id}/ack", None, ("200", "AlertOut")),
    ],
)
def test_rules_and_alerts_have_their_request_and_response_schemas(
    doc, method, path, request_schema, response
):
    operation = doc["paths"][path][method]
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    assert body.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1] == (request_schema or "")
    status, model = response
    answer = operation["responses"][status].get("content", {}).get("application/json", {})
    assert answer.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1] == (model or "")
    assert {"401", "404" if "{" in path else "401"} <= set(operation["responses"])


def test_the_ack_documents_its_conflict_and_the_alert_list_its_filters(doc):
    ack = doc["paths"]["/api/v1/alerts/{alert_id}/ack"]["post"]
    assert {"403", "404", "409"} <= set(ack["responses"])
    listing = doc["paths"]["/api/v1/alerts"]["get"]
    params = {p["name"]: p["schema"] for p in listing["parameters"]}
    assert set(params) == {"limit", "cursor", "state", "device_id", "rule_id"}
    assert params["state"]["enum"] == ["active", "acknowledged", "resolved", "open"]


def test_rule_bodies_refuse_unknown_fields_and_bound_their_numbers(doc):
    schemas = doc["components"]["schemas"]
    for name in ("RuleIn", "RulePatch", "RuleCommandIn"):
        assert schemas[name]["additionalProperties"] is False
    rule_in = schemas["RuleIn"]
    assert set(rule_in["required"]) == {"name", "kind"}
    assert rule_in["properties"]["for_seconds"]["maximum"] == 7 * 24 * 3600
    assert rule_in["properties"]["notify"]["maxItems"] == 50
    assert schemas["RuleKind"]["enum"] == ["threshold", "silence", "command_failed"]
