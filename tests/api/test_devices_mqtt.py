"""The device object's ``mqtt`` block: its login (``dev-<id>``), whether it is online over MQTT
(its retained status) and whether the broker has its last change (``in_step``/``pending``).

No bridge runs here: a change stays pending until its MqttCredentialChange rows are gone, which
these tests do by hand where the bridge would have applied them.
"""

from __future__ import annotations

import pytest
from sqlalchemy import delete, event, select

from portal.models import Device, MqttCredentialChange
from tests import factories


@pytest.fixture
def headers(headers_for, operator):
    return headers_for(operator)


def bridge_applied(db) -> None:
    """What the bridge does once the broker has taken the changes: their rows go."""
    db.session.execute(delete(MqttCredentialChange))
    db.session.commit()


def test_a_device_made_outside_the_api_is_in_step_and_offline(client, device, headers):
    body = client.get(f"/api/v1/devices/{device.id}", headers=headers).get_json()
    assert body["mqtt"] == {
        "username": f"dev-{device.id}",
        "online": False,
        "credentials": "in_step",
    }


def test_online_is_what_the_devices_retained_status_said(client, db, device, headers):
    device.mqtt_online = True
    db.session.commit()
    body = client.get(f"/api/v1/devices/{device.id}", headers=headers).get_json()
    assert body["mqtt"]["online"] is True


def test_a_created_device_is_pending_until_the_broker_has_its_login(client, db, headers):
    response = client.post("/api/v1/devices", json={"name": "mqtt-board"}, headers=headers)
    assert response.status_code == 201
    created = response.get_json()
    assert created["token"].startswith("pd_")
    assert created["mqtt"] == {
        "username": f"dev-{created['id']}",
        "online": False,
        "credentials": "pending",
    }
    shown = client.get(f"/api/v1/devices/{created['id']}", headers=headers).get_json()
    assert shown["mqtt"]["credentials"] == "pending"

    bridge_applied(db)
    shown = client.get(f"/api/v1/devices/{created['id']}", headers=headers).get_json()
    assert shown["mqtt"]["credentials"] == "in_step"


def test_a_rotated_token_is_pending_while_no_bridge_runs(client, db, device, headers):
    response = client.post(f"/api/v1/devices/{device.id}/token", headers=headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["token"] != device.token
    assert body["mqtt"] == {
        "username": f"dev-{device.id}",
        "online": False,
        "credentials": "pending",
    }
    assert db.session.scalar(
        select(MqttCredentialChange.id).where(MqttCredentialChange.device_id == device.id)
    )
    shown = client.get(f"/api/v1/devices/{device.id}", headers=headers).get_json()
    assert shown["mqtt"]["credentials"] == "pending"

    bridge_applied(db)
    shown = client.get(f"/api/v1/devices/{device.id}", headers=headers).get_json()
    assert shown["mqtt"]["credentials"] == "in_step"


def test_disabling_by_patch_makes_the_login_pending(client, db, device, headers):
    response = client.patch(
        f"/api/v1/devices/{device.id}", json={"enabled": False}, headers=headers
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["enabled"] is False
    assert body["mqtt"]["credentials"] == "pending"
    db.session.expire_all()
    assert db.session.get(Device, device.id).enabled is False

    bridge_applied(db)
    response = client.patch(f"/api/v1/devices/{device.id}", json={"enabled": True}, headers=headers)
    assert response.get_json()["mqtt"]["credentials"] == "pending"


def test_a_patch_that_leaves_enabled_alone_changes_nothing_at_the_broker(
    client, db, device, headers
):
    response = client.patch(
        f"/api/v1/devices/{device.id}", json={"location": "Attic", "enabled": True}, headers=headers
    )
    assert response.status_code == 200
    assert response.get_json()["mqtt"]["credentials"] == "in_step"
    assert db.session.scalar(select(MqttCredentialChange.id).limit(1)) is None


def test_the_list_shows_each_devices_mqtt_state(client, db, operator, headers):
    boards = [factories.DeviceFactory(owner=operator) for _ in range(3)]
    boards[0].mqtt_online = True
    db.session.add(MqttCredentialChange(device_id=boards[1].id))
    db.session.commit()
    items = client.get("/api/v1/devices", headers=headers).get_json()["items"]
    assert {item["id"]: item["mqtt"] for item in items} == {
        boards[0].id: {"username": f"dev-{boards[0].id}", "online": True, "credentials": "in_step"},
        boards[1].id: {
            "username": f"dev-{boards[1].id}",
            "online": False,
            "credentials": "pending",
        },
        boards[2].id: {
            "username": f"dev-{boards[2].id}",
            "online": False,
            "credentials": "in_step",
        },
    }


def test_the_list_looks_up_the_pending_logins_in_one_query(client, db, operator, headers):
    boards = [factories.DeviceFactory(owner=operator) for _ in range(6)]
    db.session.add_all(MqttCredentialChange(device_id=d.id) for d in boards[::2])
    db.session.commit()
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        if "mqtt_credential_changes" in statement:
            statements.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        body = client.get("/api/v1/devices", query_string={"limit": 4}, headers=headers)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    states = [item["mqtt"]["credentials"] for item in body.get_json()["items"]]
    assert states == ["pending", "in_step", "pending", "in_step"]
    assert len(statements) == 1


def test_a_pending_change_of_another_device_does_not_show(
    client, db, device, other_device, headers
):
    db.session.add(MqttCredentialChange(device_id=other_device.id))
    db.session.commit()
    body = client.get(f"/api/v1/devices/{device.id}", headers=headers).get_json()
    assert body["mqtt"]["credentials"] == "in_step"


def test_the_openapi_document_describes_the_mqtt_block(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    device = schemas["DeviceOut"]
    assert "mqtt" in device["required"]
    mqtt = schemas[device["properties"]["mqtt"]["$ref"].rsplit("/", 1)[-1]]
    assert set(mqtt["required"]) == {"username", "online", "credentials"}
    assert mqtt["properties"]["credentials"]["enum"] == ["in_step", "pending"]
    assert mqtt["properties"]["online"]["type"] == "boolean"
