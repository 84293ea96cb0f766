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
