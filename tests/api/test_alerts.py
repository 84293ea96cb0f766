"""Alerts over the API: raised for real by readings a device uploads, listed with filters and
pages, shown, acknowledged (403 for viewers, 404 out of reach, 409 once resolved), audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from portal.extensions import db as _db
from portal.models import AlertState, AuditEvent, utcnow
from portal.services import alerts, rules
from tests import factories
from tests.conftest import bearer

T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
RFC3339_UTC = "%Y-%m-%dT%H:%M:%S"


@pytest.fixture
def as_role(request, headers_for):
    """``as_role(name)``: headers of that persona."""
    return lambda name: headers_for(request.getfixturevalue(name))


def make_rule(owner, device, name="too hot", **fields):
    """> 30, clears at 27, on the device's temperature."""
    fields = {"metric": "temperature", "op": ">", "value": 30, "clear_value": 27, **fields}
    rule = rules.create_rule(owner, name=name, kind="threshold", device_id=device.id, **fields)
    _db.session.commit()
    return rule


@pytest.fixture
def hot(operator, device):
    return make_rule(operator, device, severity="critical", on_raise={"action": "fan.on"})


def upload(client, device, *values):
    """Temperatures through the device API, a second apart, the last one a second ago."""
    now = utcnow()
    readings = [
        {
            "metric": "temperature",
            "value": value,
            "ts": (now - timedelta(seconds=len(values) - i)).isoformat(),
        }
        for i, value in enumerate(values)
    ]
    response = client.post(
        "/api/v1/device/readings", json={"readings": readings}, headers=bearer(device.token)
    )
    assert response.status_code == 201, response.get_json()


@pytest.fixture
def alert(client, hot, device, as_role):
    """The alert a reading of 31 raised, as the API lists it."""
    upload(client, device, 31)
    items = client.get("/api/v1/alerts", headers=as_role("admin")).get_json()["items"]
    assert len(items) == 1
    return items[0]


def alert_events(db):
    return db.session.scalars(
        select(AuditEvent).where(AuditEvent.object_type == "alert").order_by(AuditEvent.id)
    ).all()


# ---- seeing them ----------------------------------------------------------------------------


def test_a_reading_over_the_threshold_raises_an_alert_seen_over_the_api(
    client, hot, device, as_role
):
    upload(client, device, 29, 31)
    listed = client.get("/api/v1/alerts", headers=as_role("operator")).get_json()
    assert listed["next_cursor"] is None and len(listed["items"]) == 1
    raised = listed["items"][0]
    assert {k: v for k, v in raised.items() if k not in ("id", "raised_at")} == {
        "rule_id": hot.id,
        "device_id": device.id,
        "state": "active",
        "severity": "critical",
        "value": 31.0,
        "acknowledged_at": None,
        "resolved_at": None,
    }
    assert raised["raised_at"].endswith("Z")
    shown = client.get(f"/api/v1/alerts/{raised['id']}", headers=as_role("operator"))
    assert shown.status_code == 200 and shown.get_json() == raised


@pytest.mark.parametrize("role", ["admin", "viewer", "operator"])
def test_the_alert_is_seen_by_those_who_see_its_device(client, alert, as_role, role):
    headers = as_role(role)
    assert client.get(f"/api/v1/alerts/{alert['id']}", headers=headers).status_code == 200
    listed = client.get("/api/v1/alerts", headers=headers).get_json()["items"]
    assert [a["id"] for a in listed] == [alert["id"]]


def test_another_operator_neither_sees_nor_acknowledges_the_alert(client, db, alert, as_role):
    headers = as_role("other_operator")
    assert client.get("/api/v1/alerts", headers=headers).get_json()["items"] == []
    for response in (
        client.get(f"/api/v1/alerts/{alert['id']}", headers=headers),
        client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=headers),
    ):
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"
    assert (
        client.get(f"/api/v1/alerts/{alert['id']}", headers=as_role("operator")).get_json()["state"]
        == "active"
    )


@pytest.mark.parametrize("path", ["/api/v1/alerts/999999", "/api/v1/alerts/999999/ack"])
def test_an_absent_alert_is_404(client, as_role, path):
    method = client.post if path.endswith("/ack") else client.get
    response = method(path, headers=as_role("admin"))
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_no_credentials_is_401(client, alert):
    assert client.get("/api/v1/alerts").status_code == 401
    assert client.post(f"/api/v1/alerts/{alert['id']}/ack").status_code == 401


# ---- acknowledging ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_acknowledging_keeps_the_alert_open_and_is_audited(client, db, alert, as_role, role):
    headers = as_role(role)
    response = client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=headers)
    assert response.status_code == 200
    acked = response.get_json()
    assert (acked["id"], acked["state"], acked["resolved_at"]) == (
        alert["id"],
        "acknowledged",
        None,
    )
    assert acked["acknowledged_at"] >= alert["raised_at"]
    shown = client.get(f"/api/v1/alerts/{alert['id']}", headers=headers).get_json()
    assert shown == acked
    raised, acknowledged = alert_events(db)
    assert (raised.action, raised.object_id) == ("raise", str(alert["id"]))
    assert (acknowledged.action, acknowledged.actor_name, acknowledged.object_id) == (
        "acknowledge",
        {"operator": "oscar", "admin": "alice"}[role],
        str(alert["id"]),
    )
    assert acknowledged.changes == {"state": ["active", "acknowledged"]}


def test_acknowledging_twice_changes_nothing(client, db, alert, as_role):
    headers = as_role("operator")
    first = client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=headers).get_json()
    again = client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=headers)
    assert again.status_code == 200 and again.get_json() == first
    assert [e.action for e in alert_events(db)].count("acknowledge") == 1


def test_an_acknowledged_alert_resolves_when_the_reading_clears(client, device, alert, as_role):
    headers = as_role("operator")
    client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=headers)
    upload(client, device, 28)  # above the clear value: still open
    assert client.get(f"/api/v1/alerts/{alert['id']}", headers=headers).get_json()["state"] == (
        "acknowledged"
    )
    upload(client, device, 26)
    resolved = client.get(f"/api/v1/alerts/{alert['id']}", headers=headers).get_json()
    assert resolved["state"] == "resolved" and resolved["resolved_at"] is not None


def test_a_resolved_alert_cannot_be_acknowledged(client, db, device, alert, as_role):
    upload(client, device, 26)
    before = len(alert_events(db))
    response = client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=as_role("operator"))
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "already_resolved"
    shown = client.get(f"/api/v1/alerts/{alert['id']}", headers=as_role("operator")).get_json()
    assert (shown["state"], shown["acknowledged_at"]) == ("resolved", None)
    assert len(alert_events(db)) == before


def test_a_viewer_may_not_acknowledge(client, db, alert, as_role):
    response = client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=as_role("viewer"))
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"
    shown = client.get(f"/api/v1/alerts/{alert['id']}", headers=as_role("viewer")).get_json()
    assert shown["state"] == "active"
    assert [e.action for e in alert_events(db)] == ["raise"]


def test_acknowledging_a_failed_command_alert_resolves_it(client, operator, device, as_role):
    rules.create_rule(operator, name="failures", kind="command_failed", device_id=device.id)
    command = factories.CommandFactory(device=device, expires_at=utcnow() + timedelta(hours=1))
    _db.session.commit()
    polled = client.get("/api/v1/device/commands", headers=bearer(device.token))
    assert [c["id"] for c in polled.get_json()["commands"]] == [command.id]
    result = client.post(
        f"/api/v1/device/commands/{command.id}/result",
        json={"status": "failed", "result": {"error": "relay stuck"}},
        headers=bearer(device.token),
    )
    assert result.status_code == 200
    headers = as_role("operator")
    [raised] = client.get("/api/v1/alerts?state=active", headers=headers).get_json()["items"]
    assert raised["value"] == float(command.id)
    response = client.post(f"/api/v1/alerts/{raised['id']}/ack", headers=headers)
    assert response.status_code == 200
    acked = response.get_json()
    assert acked["state"] == "resolved"
    assert acked["acknowledged_at"] is not None and acked["resolved_at"] is not None


def test_the_ack_ignores_a_body_and_query(client, alert, as_role):
    response = client.post(
        f"/api/v1/alerts/{alert['id']}/ack?state=resolved",
        json={"state": "resolved"},
        headers=as_role("operator"),
    )
    assert response.status_code == 200 and response.get_json()["state"] == "acknowledged"


# ---- lists: filters and pages ------------------------------------------------------------------


@pytest.fixture
def three(operator, device):
    """Three alerts on the operator's device, raised in this order: resolved, acknowledged,
    active (one rule each, since a rule has one open alert per device)."""
    made = []
    for i, state in enumerate(("resolved", "acknowledged", "active")):
        rule = make_rule(operator, device, name=f"rule {i}", metric=f"m{i}")
        alert = alerts.raise_alert(rule, device.id, 31.0, T0 + timedelta(minutes=i))
        if state == "acknowledged":
            alerts.acknowledge(operator, alert, T0 + timedelta(minutes=5))
        elif state == "resolved":
            alerts.resolve(alert, T0 + timedelta(minutes=5))
        made.append(alert.id)
    _db.session.commit()
    return dict(zip(("resolved", "acknowledged", "active"), made, strict=True))


@pytest.mark.parametrize(
    "state,expected",
    [
        ("active", ["active"]),
        ("acknowledged", ["acknowledged"]),
        ("resolved", ["resolved"]),
        ("open", ["active", "acknowledged"]),
        (None, ["active", "acknowledged", "resolved"]),
    ],
)
def test_the_list_filters_by_state_newest_first(client, three, as_role, state, expected):
    url = "/api/v1/alerts" + (f"?state={state}" if state else "")
    items = client.get(url, headers=as_role("viewer")).get_json()["items"]
    assert [a["id"] for a in items] == [three[s] for s in expected]
    assert [a["state"] for a in items] == expected


def test_the_list_filters_by_device_and_rule(client, db, three, operator, hot, as_role):
    second = factories.DeviceFactory(owner=operator)
    rule = make_rule(operator, second, name="second device")
    elsewhere = alerts.raise_alert(rule, second.id, 40.0, T0)
    db.session.commit()
    headers = as_role("operator")
    by_device = client.get(f"/api/v1/alerts?device_id={second.id}", headers=headers).get_json()
    by_rule = client.get(f"/api/v1/alerts?rule_id={rule.id}", headers=headers).get_json()
    neither = client.get(f"/api/v1/alerts?rule_id={hot.id}", headers=headers).get_json()
    assert [a["id"] for a in by_device["items"]] == [elsewhere.id]
    assert [a["id"] for a in by_rule["items"]] == [elsewhere.id]
    assert neither["items"] == []


def test_the_list_pages_with_a_cursor_newest_first(client, operator, device, as_role):
    made = []
    for i in range(5):
        rule = make_rule(operator, device, name=f"rule {i}", metric=f"m{i}")
        made.append(alerts.raise_alert(rule, device.id, 31.0, T0).id)
    _db.session.commit()
    headers = as_role("operator")
    seen, cursor, pages = [], None, 0
    while True:
        url = "/api/v1/alerts?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=headers).get_json()
        seen += [a["id"] for a in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (sorted(made, reverse=True), 3)


@pytest.mark.parametrize(
    "query,field",
    [
        ("state=broken", "state"),
        ("state=", "state"),
        ("limit=501", "limit"),
        ("limit=-1", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("device_id=abc", "device_id"),
        ("rule_id=0", "rule_id"),
        ("rule_id=99999999999", "rule_id"),
    ],
)
def test_a_bad_list_query_is_422_naming_it(client, as_role, query, field):
    response = client.get(f"/api/v1/alerts?{query}", headers=as_role("operator"))
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert (error["code"], set(error["fields"])) == ("validation_error", {field})


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_alerts_are_not_changed_but_by_acknowledging(client, alert, as_role, method):
    response = getattr(client, method)(f"/api/v1/alerts/{alert['id']}", headers=as_role("admin"))
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_rfc3339_times(client, alert, as_role):
    acked = client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=as_role("operator")).get_json()
    for name in ("raised_at", "acknowledged_at"):
        assert acked[name].endswith("Z")
        datetime.strptime(acked[name][:19], RFC3339_UTC)
    assert acked["state"] == AlertState.acknowledged.value
