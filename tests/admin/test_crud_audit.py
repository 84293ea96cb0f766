"""Changes through the admin: devices, users and tokens, each audited; tokens shown once."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.models import AuditEvent, Device, PersonalToken, Role, User, utcnow
from portal.services.tokens import hash_token
from portal.services.users import authenticate
from tests import factories
from tests.conftest import csrf_token


def post_form(client, path, data):
    data = {**data, "csrf_token": csrf_token(client, path)}
    return client.post(path, data=data, follow_redirects=True)


def shown_token(html: str) -> str:
    match = re.search(r"data-testid='new-token'>([^<]+)<", html)
    assert match, "no token on the page"
    return match.group(1)


def events(db, action=None):
    query = select(AuditEvent).order_by(AuditEvent.id)
    if action:
        query = query.where(AuditEvent.action == action)
    return db.session.execute(query).scalars().all()


def test_operator_creates_a_device_and_sees_its_token_once(client, db, login_as, operator):
    login_as(operator)
    response = post_form(
        client,
        "/admin/devices/new/",
        {"name": "boiler", "kind": "esp32", "location": "Cellar", "enabled": "y"},
    )
    html = response.get_data(as_text=True)
    device = db.session.execute(select(Device).where(Device.name == "boiler")).scalar_one()
    assert device.owner_id == operator.id
    assert device.token_hash == hash_token(shown_token(html))
    again = client.get(f"/admin/devices/details/?id={device.id}").get_data(as_text=True)
    assert "new-token" not in again


def test_device_creation_is_audited_with_the_admin_as_origin(client, db, login_as, operator):
    login_as(operator)
    post_form(client, "/admin/devices/new/", {"name": "boiler", "kind": "esp32"})
    event = events(db, "create")[-1]
    assert (event.actor_id, event.object_type, event.via) == (operator.id, "device", "admin")
    assert event.changes["name"] == [None, "boiler"]
    assert "token_hash" not in event.changes


def test_editing_a_device_records_before_and_after(client, db, login_as, operator, device):
    login_as(operator)
    post_form(
        client,
        f"/admin/devices/edit/?id={device.id}",
        {"name": device.name, "kind": "esp32", "location": "Attic", "enabled": "y"},
    )
    event = events(db, "update")[-1]
    assert event.changes == {"location": ["Shed", "Attic"]}


def test_deleting_a_device_is_audited(client, db, login_as, operator, device):
    login_as(operator)
    token = csrf_token(client, "/admin/devices/")
    client.post("/admin/devices/delete/", data={"id": device.id, "csrf_token": token})
    assert db.session.get(Device, device.id) is None
    assert events(db, "delete")[-1].object_id == str(device.id)


def test_a_taken_device_name_is_a_form_error_not_a_crash(client, db, login_as, operator, device):
    login_as(operator)
    response = post_form(client, "/admin/devices/new/", {"name": device.name, "kind": "esp32"})
    assert response.status_code == 200
    assert "This name is taken." in response.get_data(as_text=True)


def test_rotating_a_token_shows_the_new_one_and_kills_the_old(
    client, db, login_as, operator, device
):
    login_as(operator)
    old_hash = device.token_hash
    token = csrf_token(client, f"/admin/devices/details/?id={device.id}")
    response = client.post(
        f"/admin/devices/rotate-token/?id={device.id}",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    new = shown_token(response.get_data(as_text=True))
    db.session.expire_all()
    stored = db.session.get(Device, device.id).token_hash
    assert stored == hash_token(new) and stored != old_hash
    assert events(db, "rotate_token")[-1].object_id == str(device.id)


def test_viewer_cannot_rotate_a_token(client, db, login_as, viewer, device):
    login_as(viewer)
    token = csrf_token(client, f"/admin/devices/details/?id={device.id}")
    response = client.post(
        f"/admin/devices/rotate-token/?id={device.id}", data={"csrf_token": token}
    )
    assert response.status_code == 403
    db.session.expire_all()
    assert db.session.get(Device, device.id).token_hash == hash_token(device.token)


def test_admin_creates_a_user_with_a_hashed_password(client, db, login_as, admin):
    login_as(admin)
    post_form(
        client,
        "/admin/users/new/",
        {
            "username": "newbie",
            "role": "operator",
            "active": "y",
            "timezone": "UTC",
            "password": "a-long-password",
        },
    )
    user = authenticate("newbie", "a-long-password")
    assert user is not None and user.role is Role.operator
    assert "a-long-password" not in user.password_hash
    event = events(db, "create")[-1]
    assert event.object_type == "user" and "password_hash" not in event.changes


def test_admin_changes_a_role_and_password(client, db, login_as, admin, operator):
    login_as(admin)
    post_form(
        client,
        f"/admin/users/edit/?id={operator.id}",
        {
            "username": "oscar",
            "role": "viewer",
            "active": "y",
            "timezone": "UTC",
            "password": "another-password",
        },
    )
    user = authenticate("oscar", "another-password")
    assert user is not None and user.role is Role.viewer
    changes = events(db, "update")[-1].changes
    assert changes["role"] == ["operator", "viewer"] and changes["password"] == ["***", "***"]


def test_editing_a_user_without_password_keeps_it(client, db, login_as, admin, operator):
    login_as(admin)
    post_form(
        client,
        f"/admin/users/edit/?id={operator.id}",
        {"username": "oscar", "role": "operator", "active": "y", "timezone": "UTC", "password": ""},
    )
    assert authenticate("oscar", factories.PASSWORD) is not None


def test_a_short_password_is_a_form_error(client, db, login_as, admin):
    login_as(admin)
    response = post_form(
        client,
        "/admin/users/new/",
        {"username": "shorty", "role": "viewer", "timezone": "UTC", "password": "short"},
    )
    assert "At least 8 characters." in response.get_data(as_text=True)
    assert db.session.execute(select(User).where(User.username == "shorty")).first() is None


def test_a_user_who_owns_devices_is_not_deleted(client, db, login_as, admin, device):
    login_as(admin)
    token = csrf_token(client, "/admin/users/")
    response = client.post(
        "/admin/users/delete/",
        data={"id": device.owner_id, "csrf_token": token},
        follow_redirects=True,
    )
    assert "owns 1 device" in response.get_data(as_text=True)
    assert db.session.get(User, device.owner_id) is not None


def test_admin_creates_a_personal_token_shown_once(client, db, login_as, admin, operator):
    login_as(admin)
    response = post_form(client, "/admin/tokens/new/", {"user": operator.id, "label": "backup"})
    token = shown_token(response.get_data(as_text=True))
    row = db.session.execute(select(PersonalToken)).scalar_one()
    assert row.token_hash == hash_token(token) and row.user_id == operator.id


def test_revoking_a_token_is_audited(client, db, login_as, admin, operator):
    row = factories.PersonalTokenFactory(user=operator)
    login_as(admin)
    token = csrf_token(client, "/admin/tokens/")
    client.post(
        "/admin/tokens/action/", data={"action": "revoke", "rowid": [row.id], "csrf_token": token}
    )
    db.session.expire_all()
    assert db.session.get(PersonalToken, row.id).revoked_at is not None
    assert events(db, "revoke")[-1].object_type == "personal_token"


def test_audit_log_is_read_only(client, db, login_as, admin, device):
    login_as(admin)
    assert client.get("/admin/audit/new/").status_code == 403
    assert "/admin/audit/edit/" not in client.get("/admin/audit/").get_data(as_text=True)


def test_bulk_disable_devices(client, db, login_as, operator, device):
    login_as(operator)
    token = csrf_token(client, "/admin/devices/")
    client.post(
        "/admin/devices/action/",
        data={"action": "disable", "rowid": [device.id], "csrf_token": token},
    )
    db.session.expire_all()
    assert db.session.get(Device, device.id).enabled is False
    assert events(db, "update")[-1].changes == {"enabled": [True, False]}


@pytest.mark.parametrize(
    "payload,message", [("{not json", "Not valid JSON"), ("[1, 2]", "A JSON object is expected")]
)
def test_command_payload_must_be_a_json_object(
    client, db, login_as, operator, device, payload, message
):
    login_as(operator)
    response = post_form(
        client,
        "/admin/commands/new/",
        {"device": device.id, "action": "relay.on", "payload": payload, "expires_in": 60},
    )
    assert message in response.get_data(as_text=True)


def test_operator_sends_a_command_from_the_admin(client, db, login_as, operator, device):
    from portal.models import Command

    login_as(operator)
    post_form(
        client,
        "/admin/commands/new/",
        {"device": device.id, "action": "relay.on", "payload": '{"seconds": 5}', "expires_in": 60},
    )
    command = db.session.execute(select(Command)).scalar_one()
    assert (command.action, command.payload, command.status.value) == (
        "relay.on",
        {"seconds": 5},
        "queued",
    )


def test_admin_token_form_sets_an_expiry_and_the_read_scope(client, db, login_as, admin, operator):
    login_as(admin)
    response = post_form(
        client,
        "/admin/tokens/new/",
        {"user": operator.id, "label": "grafana", "expires_days": "30", "scope": "read"},
    )
    token = shown_token(response.get_data(as_text=True))
    row = db.session.execute(select(PersonalToken)).scalar_one()

    assert row.token_hash == hash_token(token)
    assert row.scope.value == "read"
    assert timedelta(days=29, hours=23) < row.expires_at - utcnow() <= timedelta(days=30)


def test_admin_token_form_refuses_a_bad_expiry(client, db, login_as, admin, operator):
    login_as(admin)
    response = post_form(
        client, "/admin/tokens/new/", {"user": operator.id, "expires_days": "0", "scope": "full"}
    )
    assert response.status_code == 200
    assert db.session.execute(select(PersonalToken)).first() is None
