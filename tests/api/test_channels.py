"""Notification channels over the API: CRUD, roles and reach, the secret shown once, tests."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.models import AuditEvent, NotificationChannel, NotificationDelivery
from portal.services import channels
from tests import factories
from tests.api.conftest import count

WEBHOOK = {"name": "ops hook", "kind": "webhook", "url": "https://example.org/hooks/portal"}
EMAIL = {"name": "ops mail", "kind": "email", "address": "ops@example.org"}


@pytest.fixture
def as_role(request, headers_for):
    """``as_role(name)``: headers of that persona."""
    return lambda name: headers_for(request.getfixturevalue(name))


@pytest.fixture
def own_channel(operator):
    return factories.NotificationChannelFactory(owner=operator, name="oscar-hook")


@pytest.fixture
def other_channel(other_operator):
    return factories.NotificationChannelFactory(owner=other_operator, name="olga-hook")


# ---- making one ---------------------------------------------------------------------------


def test_an_operator_makes_a_webhook_channel_and_sees_its_secret_once(client, db, as_role):
    headers = as_role("operator")
    response = client.post("/api/v1/channels", json=WEBHOOK, headers=headers)
    assert response.status_code == 201
    made = response.get_json()
    assert {k: made[k] for k in ("name", "kind", "url", "address", "owner", "enabled")} == {
        **WEBHOOK,
        "address": None,
        "owner": "oscar",
        "enabled": True,
    }
    secret = made["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert made["secret_prefix"] == secret[:10]
    shown = client.get(f"/api/v1/channels/{made['id']}", headers=headers).get_json()
    listed = client.get("/api/v1/channels", headers=headers).get_json()["items"]
    assert "secret" not in shown and all("secret" not in item for item in listed)
    assert shown["secret_prefix"] == made["secret_prefix"]
    stored = db.session.get(NotificationChannel, made["id"])
    assert secret.encode() not in stored.secret  # kept encrypted
    assert channels.channel_secret(stored.secret) == secret


def test_an_email_channel_has_an_address_and_no_secret(client, as_role):
    response = client.post("/api/v1/channels", json=EMAIL, headers=as_role("operator"))
    assert response.status_code == 201
    made = response.get_json()
    assert (made["address"], made["url"], made["secret"], made["secret_prefix"]) == (
        "ops@example.org",
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    "body,fields",
    [
        ({"name": "x", "kind": "webhook"}, {"url"}),
        ({"name": "x", "kind": "webhook", "url": "ftp://example.org/"}, {"url"}),
        ({"name": "x", "kind": "webhook", "url": "https://exa mple.org/"}, {"url"}),
        ({"name": "x", "kind": "webhook", "url": "http://example.org:99999/"}, {"url"}),
        ({"name": "x", "kind": "webhook", "url": "http:///nohost"}, {"url"}),
        ({**WEBHOOK, "address": "ops@example.org"}, {"address"}),
        ({"name": "x", "kind": "email"}, {"address"}),
        ({"name": "x", "kind": "email", "address": "Ops <ops@example.org>"}, {"address"}),
        ({**EMAIL, "url": "https://example.org/"}, {"url"}),
        ({**WEBHOOK, "name": "  "}, {"name"}),
        ({**WEBHOOK, "name": "n" * 101}, {"name"}),
        ({**WEBHOOK, "kind": "sms"}, {"kind"}),
        ({**WEBHOOK, "secret": "mine"}, {"secret"}),
    ],
)
def test_a_bad_channel_is_422_naming_each_bad_field(client, db, as_role, body, fields):
    response = client.post("/api/v1/channels", json=body, headers=as_role("operator"))
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert (error["code"], set(error["fields"])) == ("validation_error", fields)
    assert count(db, NotificationChannel) == 0


def test_a_name_the_owner_already_uses_is_409(client, own_channel, as_role):
    body = {**WEBHOOK, "name": "oscar-hook"}
    response = client.post("/api/v1/channels", json=body, headers=as_role("operator"))
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "name_taken"


def test_another_owner_may_use_the_same_name(client, other_channel, as_role):
    body = {**WEBHOOK, "name": "olga-hook"}
    assert (
        client.post("/api/v1/channels", json=body, headers=as_role("operator")).status_code == 201
    )


def test_a_viewer_may_not_make_channels(client, db, as_role):
    response = client.post("/api/v1/channels", json=WEBHOOK, headers=as_role("viewer"))
    assert response.status_code == 403
    assert count(db, NotificationChannel) == 0


def test_an_admin_makes_a_channel_for_an_operator(client, operator, as_role):
    body = {**WEBHOOK, "owner": "oscar"}
    made = client.post("/api/v1/channels", json=body, headers=as_role("admin")).get_json()
    assert made["owner"] == "oscar" and made["owner_id"] == operator.id


@pytest.mark.parametrize("owner,role", [("olga", "operator"), ("vera", "admin")])
def test_an_owner_must_be_oneself_or_chosen_by_an_admin_and_no_viewer(
    client, other_operator, viewer, as_role, owner, role
):
    body = {**WEBHOOK, "owner": owner}
    response = client.post("/api/v1/channels", json=body, headers=as_role(role))
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"owner"}


# ---- reach -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "role,visible",
    [
        ("admin", {"oscar-hook", "olga-hook"}),
        ("viewer", {"oscar-hook", "olga-hook"}),
        ("operator", {"oscar-hook"}),
    ],
)
def test_the_list_shows_the_channels_in_reach(
    client, own_channel, other_channel, as_role, role, visible
):
    response = client.get("/api/v1/channels", headers=as_role(role))
    assert response.status_code == 200
    assert {c["name"] for c in response.get_json()["items"]} == visible


def test_the_list_pages_with_a_cursor(client, operator, as_role):
    names = [factories.NotificationChannelFactory(owner=operator).name for _ in range(3)]
    first = client.get("/api/v1/channels?limit=2", headers=as_role("operator")).get_json()
    rest = client.get(
        f"/api/v1/channels?limit=2&cursor={first['next_cursor']}", headers=as_role("operator")
    ).get_json()
    assert [c["name"] for c in first["items"] + rest["items"]] == names
    assert rest["next_cursor"] is None


@pytest.mark.parametrize(
    "method,suffix,body",
    [
        ("get", "", None),
        ("patch", "", {"name": "mine now"}),
        ("delete", "", None),
        ("post", "/secret", None),
        ("post", "/test", None),
    ],
)
def test_another_operators_channel_is_404(client, db, other_channel, as_role, method, suffix, body):
    response = getattr(client, method)(
        f"/api/v1/channels/{other_channel.id}{suffix}", json=body, headers=as_role("operator")
    )
    assert response.status_code == 404
    assert db.session.get(NotificationChannel, other_channel.id).name == "olga-hook"


@pytest.mark.parametrize(
    "method,suffix,body",
    [
        ("patch", "", {"name": "viewed"}),
        ("delete", "", None),
        ("post", "/secret", None),
        ("post", "/test", None),
    ],
)
def test_a_viewer_reads_a_channel_but_changes_nothing(
    client, db, own_channel, as_role, method, suffix, body
):
    headers = as_role("viewer")
    assert client.get(f"/api/v1/channels/{own_channel.id}", headers=headers).status_code == 200
    response = getattr(client, method)(
        f"/api/v1/channels/{own_channel.id}{suffix}", json=body, headers=headers
    )
    assert response.status_code == 403
    assert count(db, NotificationDelivery) == 0
    assert db.session.get(NotificationChannel, own_channel.id).name == "oscar-hook"


def test_an_absent_channel_is_404(client, as_role):
    assert client.get("/api/v1/channels/999999", headers=as_role("admin")).status_code == 404


# ---- changing, deleting ----------------------------------------------------------------------


def test_patch_changes_only_the_fields_sent(client, own_channel, as_role):
    response = client.patch(
        f"/api/v1/channels/{own_channel.id}",
        json={"url": "https://example.org/new", "enabled": False},
        headers=as_role("operator"),
    )
    assert response.status_code == 200
    changed = response.get_json()
    assert (changed["url"], changed["enabled"], changed["name"]) == (
        "https://example.org/new",
        False,
        "oscar-hook",
    )


@pytest.mark.parametrize(
    "body,field",
    [
        ({"kind": "email"}, "kind"),
        ({"name": None}, "name"),
        ({"enabled": None}, "enabled"),
        ({"address": "ops@example.org"}, "address"),
        ({"url": "mailto:ops@example.org"}, "url"),
        ({"owner": "olga"}, "owner"),
    ],
)
def test_a_bad_patch_is_422(client, own_channel, other_operator, as_role, body, field):
    response = client.patch(
        f"/api/v1/channels/{own_channel.id}", json=body, headers=as_role("operator")
    )
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {field}


def test_the_channels_own_kind_may_be_sent_back(client, own_channel, as_role):
    response = client.patch(
        f"/api/v1/channels/{own_channel.id}", json={"kind": "webhook"}, headers=as_role("operator")
    )
    assert response.status_code == 200


def test_an_admin_gives_a_channel_away(client, own_channel, other_operator, as_role):
    response = client.patch(
        f"/api/v1/channels/{own_channel.id}", json={"owner": "olga"}, headers=as_role("admin")
    )
    assert response.status_code == 200 and response.get_json()["owner"] == "olga"


def test_delete_takes_the_channels_deliveries_along(client, db, own_channel, as_role):
    factories.NotificationAttemptFactory(
        delivery=factories.NotificationDeliveryFactory(channel=own_channel)
    )
    headers = as_role("operator")
    assert client.delete(f"/api/v1/channels/{own_channel.id}", headers=headers).status_code == 204
    assert client.get(f"/api/v1/channels/{own_channel.id}", headers=headers).status_code == 404
    assert count(db, NotificationDelivery) == 0


def test_changes_are_audited_without_the_secret(client, db, as_role):
    headers = as_role("operator")
    made = client.post("/api/v1/channels", json=WEBHOOK, headers=headers).get_json()
    client.patch(f"/api/v1/channels/{made['id']}", json={"name": "renamed"}, headers=headers)
    client.post(f"/api/v1/channels/{made['id']}/secret", headers=headers)
    client.delete(f"/api/v1/channels/{made['id']}", headers=headers)
    events = db.session.scalars(
        select(AuditEvent).where(AuditEvent.object_type == "notification_channel")
    ).all()
    assert [e.action for e in events] == ["create", "update", "rotate_secret", "delete"]
    assert events[1].changes == {"name": ["ops hook", "renamed"]}
    assert all(made["secret"] not in str(e.changes) for e in events)


# ---- the secret, a test --------------------------------------------------------------------


def test_a_new_secret_is_shown_once_and_replaces_the_old(client, db, as_role):
    headers = as_role("operator")
    made = client.post("/api/v1/channels", json=WEBHOOK, headers=headers).get_json()
    response = client.post(f"/api/v1/channels/{made['id']}/secret", headers=headers)
    assert response.status_code == 200
    renewed = response.get_json()["secret"]
    assert renewed.startswith("whsec_") and renewed != made["secret"]
    stored = db.session.get(NotificationChannel, made["id"])
    assert channels.channel_secret(stored.secret) == renewed


def test_an_email_channel_has_no_secret_to_renew(client, as_role):
    headers = as_role("operator")
    made = client.post("/api/v1/channels", json=EMAIL, headers=headers).get_json()
    response = client.post(f"/api/v1/channels/{made['id']}/secret", headers=headers)
    assert response.status_code == 409


def test_a_test_notification_is_queued(client, db, own_channel, as_role):
    response = client.post(f"/api/v1/channels/{own_channel.id}/test", headers=as_role("operator"))
    assert response.status_code == 201
    queued = response.get_json()
    assert (queued["channel_id"], queued["event"], queued["status"], queued["attempts"]) == (
        own_channel.id,
        "notification.test",
        "pending",
        0,
    )
    assert count(db, NotificationDelivery) == 1


def test_a_disabled_channel_cannot_be_tested(client, operator, as_role):
    channel = factories.NotificationChannelFactory(owner=operator, enabled=False)
    response = client.post(f"/api/v1/channels/{channel.id}/test", headers=as_role("operator"))
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "channel_disabled"
