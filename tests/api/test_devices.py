"""Devices for people: CRUD, roles and reach, token rotation, cascade on delete, audit."""

from __future__ import annotations

import pytest

from portal.models import AuditEvent, Command, Device, Reading, Schedule
from tests import factories
from tests.api.conftest import count

ROLES = ["admin", "operator", "viewer"]


@pytest.fixture
def as_role(request, headers_for):
    """``as_role(name)``: headers of that persona (operator owns ``device``)."""
    return lambda name: headers_for(request.getfixturevalue(name))


# ---- list and show -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "role, visible",
    [
        ("admin", {"oscar-board", "olga-board"}),
        ("viewer", {"oscar-board", "olga-board"}),
        ("operator", {"oscar-board"}),
    ],
)
def test_list_shows_the_devices_in_reach(client, device, other_device, as_role, role, visible):
    response = client.get("/api/v1/devices", headers=as_role(role))
    assert response.status_code == 200
    assert {d["name"] for d in response.get_json()["items"]} == visible


def test_device_object_has_the_documented_fields_and_no_secret(client, device, as_role):
    item = client.get(f"/api/v1/devices/{device.id}", headers=as_role("admin")).get_json()
    assert item["id"] == device.id
    assert item["owner"] == "oscar"
    assert item["created_at"].endswith("Z")
    assert not {"token", "token_hash", "token_prefix"} & set(item)


def test_list_pages_with_an_opaque_cursor(client, operator, as_role):
    names = [factories.DeviceFactory(owner=operator).name for _ in range(5)]
    headers, seen, cursor = as_role("operator"), [], None
    while True:
        query = {"limit": 2} if cursor is None else {"limit": 2, "cursor": cursor}
        body = client.get("/api/v1/devices", query_string=query, headers=headers).get_json()
        seen += [d["name"] for d in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == names


@pytest.mark.parametrize(
    "query",
    [
        {"limit": 501},
        {"limit": 0},
        {"limit": "x"},
        {"cursor": "not-a-cursor"},
        {"cursor": "WyJ4Il0"},
    ],
)
def test_bad_limit_or_cursor_is_422(client, as_role, query):
    response = client.get("/api/v1/devices", query_string=query, headers=as_role("admin"))
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == list(query)


def test_limit_defaults_to_50(client, operator, as_role):
    for _ in range(51):
        factories.DeviceFactory(owner=operator)
    body = client.get("/api/v1/devices", headers=as_role("admin")).get_json()
    assert len(body["items"]) == 50
    assert body["next_cursor"] is not None


@pytest.mark.parametrize(
    "method, suffix",
    [
        ("get", ""),
        ("patch", ""),
        ("delete", ""),
        ("post", "/token"),
        ("get", "/readings"),
        ("get", "/commands"),
        ("post", "/commands"),
    ],
)
def test_operator_gets_404_for_another_operators_device(
    client, other_device, as_role, method, suffix
):
    kwargs = (
        {"json": {"action": "relay.on"} if suffix == "/commands" else {}}
        if method != "get" and method != "delete"
        else {}
    )
    response = getattr(client, method)(
        f"/api/v1/devices/{other_device.id}{suffix}", headers=as_role("operator"), **kwargs
    )
    assert response.status_code == 404


@pytest.mark.parametrize("role", ROLES)
def test_absent_device_is_404(client, as_role, role):
    assert client.get("/api/v1/devices/4242", headers=as_role(role)).status_code == 404


# ---- create ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "operator"])
def test_writers_create_a_device_and_get_its_token_once(client, db, as_role, role):
    response = client.post(
        "/api/v1/devices",
        headers=as_role(role),
        json={"name": "pump", "kind": "esp32", "location": "Cellar", "description": "Sump pump"},
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["token"].startswith("pd_")
    assert (body["name"], body["kind"], body["location"]) == ("pump", "esp32", "Cellar")
    assert body["owner"] == {"admin": "alice", "operator": "oscar"}[role]
    shown = client.get(f"/api/v1/devices/{body['id']}", headers=as_role(role)).get_json()
    assert "token" not in shown


def test_created_token_works_for_the_device(client, as_role):
    token = client.post(
        "/api/v1/devices", json={"name": "pump"}, headers=as_role("admin")
    ).get_json()["token"]
    response = client.post("/api/v1/device/heartbeat", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_viewer_cannot_create_a_device(client, db, as_role):
    response = client.post("/api/v1/devices", json={"name": "pump"}, headers=as_role("viewer"))
    assert response.status_code == 403
    assert count(db, Device) == 0


def test_taken_name_is_409(client, device, as_role):
    response = client.post("/api/v1/devices", json={"name": device.name}, headers=as_role("admin"))
    assert response.status_code == 409


def test_admin_may_create_for_another_owner(client, operator, as_role):
    response = client.post(
        "/api/v1/devices", json={"name": "pump", "owner": "oscar"}, headers=as_role("admin")
    )
    assert response.get_json()["owner_id"] == operator.id


def test_operator_may_not_create_for_another_owner(client, other_operator, as_role):
    response = client.post(
        "/api/v1/devices", json={"name": "pump", "owner": "olga"}, headers=as_role("operator")
    )
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["owner"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "x", "kind": "Big Board!"}, "kind"),
    ],
)
def test_service_rules_are_422(client, as_role, body, field):
    response = client.post("/api/v1/devices", json=body, headers=as_role("admin"))
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == [field]


# ---- change and delete -------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "operator"])
def test_patch_changes_only_the_fields_sent(client, device, as_role, role):
    response = client.patch(
        f"/api/v1/devices/{device.id}", json={"location": "Roof"}, headers=as_role(role)
    )
    assert response.status_code == 200
    body = response.get_json()
    assert (body["location"], body["name"], body["kind"]) == ("Roof", "oscar-board", "esp32")


def test_viewer_patch_is_403(client, device, as_role):
    response = client.patch(
        f"/api/v1/devices/{device.id}", json={"location": "Roof"}, headers=as_role("viewer")
    )
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("field", ["name", "enabled"])
def test_patch_with_null_for_a_required_field_is_422(client, device, as_role, field):
    response = client.patch(
        f"/api/v1/devices/{device.id}", json={field: None}, headers=as_role("admin")
    )
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == [field]


def test_disabling_a_device_locks_its_token_out(client, device, as_role):
    client.patch(
        f"/api/v1/devices/{device.id}", json={"enabled": False}, headers=as_role("operator")
    )
    response = client.post(
        "/api/v1/device/heartbeat", headers={"Authorization": f"Bearer {device.token}"}
    )
    assert response.status_code == 401


@pytest.mark.parametrize("role", ["admin", "operator"])
def test_delete_removes_the_device_and_everything_hanging_off_it(client, db, device, as_role, role):
    factories.ScheduleFactory(device=device)
    factories.CommandFactory(device=device)
    factories.ReadingFactory(device=device)
    response = client.delete(f"/api/v1/devices/{device.id}", headers=as_role(role))
    assert response.status_code == 204
    assert response.data == b""
    assert [count(db, m) for m in (Device, Schedule, Command, Reading)] == [0, 0, 0, 0]


def test_viewer_delete_is_403_and_keeps_the_device(client, db, device, as_role):
    assert (
        client.delete(f"/api/v1/devices/{device.id}", headers=as_role("viewer")).status_code == 403
    )
    assert count(db, Device) == 1


def test_viewer_cannot_rotate_a_token(client, device, as_role):
    assert (
        client.post(f"/api/v1/devices/{device.id}/token", headers=as_role("viewer")).status_code
        == 403
    )


# ---- audit -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, action",
    [
        (lambda c, d, h: c.post("/api/v1/devices", json={"name": "new"}, headers=h), "create"),
        (
            lambda c, d, h: c.patch(
                f"/api/v1/devices/{d.id}", json={"location": "Roof"}, headers=h
            ),
            "update",
        ),
        (lambda c, d, h: c.delete(f"/api/v1/devices/{d.id}", headers=h), "delete"),
        (lambda c, d, h: c.post(f"/api/v1/devices/{d.id}/token", headers=h), "rotate_token"),
    ],
)
def test_every_change_writes_an_audit_entry_via_api(
    client, db, device, operator, as_role, call, action
):
    assert call(client, device, as_role("operator")).status_code in (200, 201, 204)
    events = db.session.query(AuditEvent).filter_by(object_type="device").all()
    assert [(e.action, e.actor_id, e.via) for e in events] == [(action, operator.id, "api")]
