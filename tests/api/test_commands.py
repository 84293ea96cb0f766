"""Commands for people: send, list with filters, show, cancel; roles and reach."""

from __future__ import annotations

from datetime import timedelta

import pytest

from portal.models import AuditEvent, Command, CommandStatus, utcnow
from tests import factories
from tests.api.conftest import command_row, count


@pytest.fixture
def as_role(request, headers_for):
    return lambda name: headers_for(request.getfixturevalue(name))


def send(client, device, headers, **body):
    body.setdefault("action", "relay.on")
    return client.post(f"/api/v1/devices/{device.id}/commands", json=body, headers=headers)


@pytest.mark.parametrize("role", ["admin", "operator"])
def test_sent_command_is_queued(client, device, as_role, role):
    response = send(client, device, as_role(role), payload={"seconds": 30}, expires_in=120)
    assert response.status_code == 201
    body = response.get_json()
    assert (body["status"], body["action"], body["payload"], body["attempts"]) == (
        "queued",
        "relay.on",
        {"seconds": 30},
        0,
    )
    created = body["created_at"].replace("Z", "+00:00")
    expires = body["expires_at"].replace("Z", "+00:00")
    from datetime import datetime

    assert datetime.fromisoformat(expires) - datetime.fromisoformat(created) == timedelta(
        seconds=120
    )


def test_sent_command_defaults_to_an_hour(client, db, device, as_role):
    command_id = send(client, device, as_role("operator")).get_json()["id"]
    row = command_row(db, command_id)
    assert row.expires_at - row.created_at == timedelta(hours=1)


def test_sending_writes_an_audit_entry(client, db, device, operator, as_role):
    send(client, device, as_role("operator"))
    (event,) = db.session.query(AuditEvent).filter_by(object_type="command").all()
    assert (event.action, event.actor_id, event.via) == ("create", operator.id, "api")


def test_viewer_cannot_send_a_command(client, db, device, as_role):
    assert send(client, device, as_role("viewer")).status_code == 403
    assert count(db, Command) == 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({"action": "relay on"}, "action"),
        ({"action": "x", "expires_in": 0}, "expires_in"),
        ({"action": "x", "expires_in": "60"}, "expires_in"),
        ({"action": "x", "payload": "on"}, "payload"),
    ],
)
def test_bad_command_is_422(client, device, as_role, body, field):
    response = client.post(
        f"/api/v1/devices/{device.id}/commands", json=body, headers=as_role("operator")
    )
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == [field]


@pytest.mark.parametrize("role, visible", [("admin", 2), ("viewer", 2), ("operator", 1)])
def test_list_shows_commands_in_reach(client, device, other_device, as_role, role, visible):
    factories.CommandFactory(device=device)
    factories.CommandFactory(device=other_device)
    items = client.get("/api/v1/commands", headers=as_role(role)).get_json()["items"]
    assert len(items) == visible


def test_list_filters_by_status_and_device(client, device, other_device, as_role):
    wanted = factories.CommandFactory(device=device, status=CommandStatus.delivered)
    factories.CommandFactory(device=device)
    factories.CommandFactory(device=other_device, status=CommandStatus.delivered)
    response = client.get(
        "/api/v1/commands",
        headers=as_role("admin"),
        query_string={"status": "delivered", "device_id": device.id},
    )
    assert [c["id"] for c in response.get_json()["items"]] == [wanted.id]


def test_list_is_newest_first_and_pages(client, device, as_role):
    ids = [factories.CommandFactory(device=device).id for _ in range(3)]
    first = client.get(
        "/api/v1/commands", query_string={"limit": 2}, headers=as_role("admin")
    ).get_json()
    second = client.get(
        "/api/v1/commands",
        query_string={"limit": 2, "cursor": first["next_cursor"]},
        headers=as_role("admin"),
    ).get_json()
    assert [c["id"] for c in first["items"] + second["items"]] == ids[::-1]
    assert second["next_cursor"] is None


def test_list_with_unknown_status_is_422(client, as_role):
    response = client.get(
        "/api/v1/commands", query_string={"status": "lost"}, headers=as_role("admin")
    )
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["status"]


def test_device_commands_list_only_that_device(client, device, other_device, as_role):
    mine = factories.CommandFactory(device=device)
    factories.CommandFactory(device=other_device)
    items = client.get(
        f"/api/v1/devices/{device.id}/commands", headers=as_role("admin")
    ).get_json()["items"]
    assert [c["id"] for c in items] == [mine.id]


@pytest.mark.parametrize("role", ["admin", "viewer", "operator"])
def test_show_a_command_in_reach(client, device, as_role, role):
    command = factories.CommandFactory(device=device)
    response = client.get(f"/api/v1/commands/{command.id}", headers=as_role(role))
    assert response.status_code == 200
    assert response.get_json()["device_id"] == device.id


def test_operator_gets_404_for_another_operators_command(client, other_device, as_role):
    command = factories.CommandFactory(device=other_device)
    for path in (f"/api/v1/commands/{command.id}", f"/api/v1/commands/{command.id}/cancel"):
        method = client.get if path.endswith(str(command.id)) else client.post
        assert method(path, headers=as_role("operator")).status_code == 404


@pytest.mark.parametrize("status", ["queued", "delivered"])
def test_cancel_an_open_command(client, db, device, as_role, status):
    command = factories.CommandFactory(device=device, status=CommandStatus(status))
    response = client.post(f"/api/v1/commands/{command.id}/cancel", headers=as_role("operator"))
    assert response.status_code == 200
    assert response.get_json()["status"] == "cancelled"
    assert command_row(db, command.id).status is CommandStatus.cancelled


@pytest.mark.parametrize("status", ["succeeded", "failed", "expired", "cancelled"])
def test_cancel_a_finished_command_is_409(client, db, device, as_role, status):
    command = factories.CommandFactory(device=device, status=CommandStatus(status))
    response = client.post(f"/api/v1/commands/{command.id}/cancel", headers=as_role("admin"))
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "not_cancellable"
    assert command_row(db, command.id).status is CommandStatus(status)


def test_viewer_cancel_is_403(client, db, device, as_role):
    command = factories.CommandFactory(device=device)
    response = client.post(f"/api/v1/commands/{command.id}/cancel", headers=as_role("viewer"))
    assert response.status_code == 403
    assert command_row(db, command.id).status is CommandStatus.queued


def test_cancelled_command_is_not_handed_out(client, device, as_role):
    command = factories.CommandFactory(device=device)
    client.post(f"/api/v1/commands/{command.id}/cancel", headers=as_role("operator"))
    response = client.get(
        "/api/v1/device/commands", headers={"Authorization": f"Bearer {device.token}"}
    )
    assert response.get_json() == {"commands": []}


def test_expire_commands_closes_overdue_and_exhausted_ones(app, db, device):
    from portal.services.commands import expire_commands

    now = utcnow()
    overdue = factories.CommandFactory(device=device, expires_at=now - timedelta(seconds=1))
    exhausted = factories.CommandFactory(
        device=device,
        status=CommandStatus.delivered,
        attempts=5,
        lease_expires_at=now - timedelta(seconds=1),
    )
    leased = factories.CommandFactory(
        device=device,
        status=CommandStatus.delivered,
        attempts=5,
        lease_expires_at=now + timedelta(seconds=30),
    )
    assert expire_commands(now) == 2
    db.session.commit()
    assert command_row(db, overdue.id).status is CommandStatus.expired
    assert (command_row(db, exhausted.id).status, command_row(db, exhausted.id).reason) == (
        CommandStatus.failed,
        "no_result",
    )
    assert command_row(db, leased.id).status is CommandStatus.delivered
