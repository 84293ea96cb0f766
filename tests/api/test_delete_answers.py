"""What the API's deletes answer: 204 as before, 200 with what went on ``Prefer:
return=representation``, and ``GET …/delete-preview`` beforehand; each removed object audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.extensions import db as _db
from portal.models import (
    Alert,
    AuditEvent,
    Command,
    Device,
    NotificationDelivery,
    Reading,
    Rule,
    Schedule,
    utcnow,
)
from portal.services import alerts, deletes, rules
from tests import factories
from tests.api.conftest import count

PREFER = {"Prefer": "return=representation"}


@pytest.fixture
def as_role(request, headers_for):
    """``as_role(name)``: headers of that persona."""
    return lambda name: headers_for(request.getfixturevalue(name))


@pytest.fixture
def busy_device(db, device, operator):
    """The operator's device with two schedules, a rule with an alert, commands and readings."""
    factories.ScheduleFactory(device=device, name="morning")
    factories.ScheduleFactory(device=device, name="evening")
    rule = rules.create_rule(
        operator, name="too hot", kind="threshold", device_id=device.id, metric="t", op=">", value=1
    )
    alerts.raise_alert(rule, device.id, 2.0, utcnow())
    for _ in range(3):
        factories.CommandFactory(device=device)
    for _ in range(4):
        factories.ReadingFactory(device=device)
    db.session.commit()
    return device


def expected_device_answer(device, rule_id: int, more: bool = False, readings: int = 4) -> dict:
    rows = _db.session.scalars(select(Schedule).where(Schedule.device_id == device.id))
    schedules = sorted((s.name, s.id) for s in rows)
    return {
        "type": "device",
        "id": device.id,
        "name": "oscar-board",
        "dependents": [
            {
                "type": "schedule",
                "count": 2,
                "more": False,
                "items": [{"id": key, "name": name} for name, key in schedules],
            },
            {
                "type": "rule",
                "count": 1,
                "more": False,
                "items": [{"id": rule_id, "name": "too hot"}],
            },
            {"type": "alert", "count": 1, "more": False, "items": []},
            {"type": "command", "count": 3, "more": False, "items": []},
            {"type": "reading", "count": readings, "more": more, "items": []},
        ],
    }


def test_delete_still_answers_204_without_a_body(client, busy_device, as_role):
    response = client.delete(f"/api/v1/devices/{busy_device.id}", headers=as_role("operator"))
    assert (response.status_code, response.data) == (204, b"")
    assert "Preference-Applied" not in response.headers


def test_prefer_return_representation_answers_what_was_deleted(client, db, busy_device, as_role):
    rule_id = db.session.scalar(select(Rule.id))
    expected = expected_device_answer(busy_device, rule_id)
    response = client.delete(
        f"/api/v1/devices/{busy_device.id}", headers={**as_role("operator"), **PREFER}
    )
    assert response.status_code == 200
    assert response.headers["Preference-Applied"] == "return=representation"
    assert response.get_json() == expected
    assert [count(db, m) for m in (Device, Schedule, Rule, Alert, Command, Reading)] == [0] * 6


@pytest.mark.parametrize(
    "prefer", ["respond-async, return=representation", 'RETURN="representation"; x=1']
)
def test_prefer_is_read_among_other_preferences(client, device, as_role, prefer):
    response = client.delete(
        f"/api/v1/devices/{device.id}", headers={**as_role("operator"), "Prefer": prefer}
    )
    assert response.status_code == 200 and response.get_json()["dependents"] == []


def test_prefer_return_minimal_is_204(client, device, as_role):
    response = client.delete(
        f"/api/v1/devices/{device.id}",
        headers={**as_role("operator"), "Prefer": "return=minimal"},
    )
    assert response.status_code == 204


def test_the_preview_tells_the_same_and_deletes_nothing(client, db, busy_device, as_role):
    rule_id = db.session.scalar(select(Rule.id))
    response = client.get(
        f"/api/v1/devices/{busy_device.id}/delete-preview", headers=as_role("operator")
    )
    assert response.status_code == 200
    assert response.get_json() == expected_device_answer(busy_device, rule_id)
    assert [count(db, m) for m in (Device, Schedule, Rule, Alert, Command, Reading)] == [
        1,
        2,
        1,
        1,
        3,
        4,
    ]


def test_the_preview_stops_counting_at_the_cap(client, db, busy_device, as_role, monkeypatch):
    monkeypatch.setattr(deletes, "COUNT_CAP", 3)
    rule_id = db.session.scalar(select(Rule.id))
    response = client.get(
        f"/api/v1/devices/{busy_device.id}/delete-preview", headers=as_role("operator")
    )
    assert response.get_json() == expected_device_answer(busy_device, rule_id, True, 3)


def test_the_delete_counts_exactly_past_the_cap(client, busy_device, as_role, monkeypatch):
    monkeypatch.setattr(deletes, "COUNT_CAP", 3)
    response = client.delete(
        f"/api/v1/devices/{busy_device.id}", headers={**as_role("operator"), **PREFER}
    )
    readings = response.get_json()["dependents"][-1]
    assert readings == {"type": "reading", "count": 4, "more": False, "items": []}


def test_each_removed_object_is_audited_via_api(client, db, busy_device, operator, as_role):
    client.delete(f"/api/v1/devices/{busy_device.id}", headers=as_role("operator"))
    events = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "delete").order_by(AuditEvent.id)
    ).all()
    assert [(e.object_type, e.changes.get("count")) for e in events] == [
        ("alert", 1),
        ("command", 3),
        ("reading", 4),
        ("schedule", None),
        ("schedule", None),
        ("rule", None),
        ("device", None),
    ]
    assert {(e.actor_id, e.via) for e in events} == {(operator.id, "api")}


def test_a_schedules_answer_is_itself_alone(client, device, as_role):
    schedule = factories.ScheduleFactory(device=device, name="nightly")
    factories.CommandFactory(device=device, schedule=schedule)
    response = client.delete(
        f"/api/v1/schedules/{schedule.id}", headers={**as_role("operator"), **PREFER}
    )
    assert response.get_json() == {
        "type": "schedule",
        "id": schedule.id,
        "name": "nightly",
        "dependents": [],
    }


def test_a_rules_answer_counts_its_alerts(client, db, busy_device, as_role):
    rule_id = db.session.scalar(select(Rule.id))
    response = client.delete(f"/api/v1/rules/{rule_id}", headers={**as_role("operator"), **PREFER})
    assert response.get_json()["dependents"] == [
        {"type": "alert", "count": 1, "more": False, "items": []}
    ]


def test_a_channels_answer_counts_its_deliveries(client, db, operator, as_role):
    channel = factories.NotificationChannelFactory(owner=operator, name="hook")
    factories.NotificationDeliveryFactory(channel=channel)
    path = f"/api/v1/channels/{channel.id}"
    preview = client.get(path + "/delete-preview", headers=as_role("operator")).get_json()
    response = client.delete(path, headers={**as_role("operator"), **PREFER})
    assert preview == response.get_json()
    assert preview["dependents"] == [{"type": "delivery", "count": 1, "more": False, "items": []}]
    assert count(db, NotificationDelivery) == 0


@pytest.mark.parametrize(
    "path",
    ["/devices/{d}/delete-preview", "/schedules/{s}/delete-preview", "/rules/{r}/delete-preview"],
)
def test_a_viewer_may_not_preview_a_delete(client, db, busy_device, as_role, path):
    ids = {
        "d": busy_device.id,
        "s": db.session.scalar(select(Schedule.id)),
        "r": db.session.scalar(select(Rule.id)),
    }
    response = client.get("/api/v1" + path.format(**ids), headers=as_role("viewer"))
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"


def test_another_operators_device_is_404(client, other_device, as_role):
    response = client.get(
        f"/api/v1/devices/{other_device.id}/delete-preview", headers=as_role("operator")
    )
    assert response.status_code == 404


def test_the_document_describes_the_answer_and_the_preview(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    delete = doc["paths"]["/api/v1/devices/{device_id}"]["delete"]
    assert "content" not in delete["responses"]["204"]
    answer = delete["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert answer.endswith("/DeletionOut")
    assert "Prefer: return=representation" in delete["description"]
    for kind in ("devices/{device_id}", "schedules/{schedule_id}", "rules/{rule_id}"):
        preview = doc["paths"][f"/api/v1/{kind}/delete-preview"]["get"]
        assert {"200", "403", "404"} <= set(preview["responses"])
    assert "/api/v1/channels/{channel_id}/delete-preview" in doc["paths"]
