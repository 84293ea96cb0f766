"""Who may call: personal tokens, the login session (with CSRF on writes), device tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest

from portal.models import Device, PersonalToken, utcnow
from tests import factories
from tests.api.conftest import count
from tests.conftest import bearer, csrf_token


def test_personal_token_reads_the_api(client, admin, headers_for):
    assert client.get("/api/v1/devices", headers=headers_for(admin)).status_code == 200


def test_bearer_write_needs_no_csrf_token(client, admin, headers_for):
    response = client.post("/api/v1/devices", json={"name": "board"}, headers=headers_for(admin))
    assert response.status_code == 201


def test_session_reads_the_api(client, login_as, viewer):
    login_as(viewer)
    assert client.get("/api/v1/devices").status_code == 200


def test_session_write_with_csrf_header_succeeds(client, login_as, admin):
    login_as(admin)
    response = client.post(
        "/api/v1/devices",
        json={"name": "board"},
        headers={"X-CSRFToken": csrf_token(client, "/login")},
    )
    assert response.status_code == 201


def test_session_write_with_wrong_csrf_header_is_400(client, login_as, admin):
    login_as(admin)
    response = client.post(
        "/api/v1/devices", json={"name": "board"}, headers={"X-CSRFToken": "forged"}
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "csrf_failed"


def test_bearer_header_wins_over_a_session(client, login_as, admin):
    login_as(admin)
    response = client.get("/api/v1/devices", headers=bearer("pp_not-a-token"))
    assert response.status_code == 401


def test_revoked_token_is_401(client, db, admin):
    token = factories.PersonalTokenFactory(user=admin, revoked_at=utcnow())
    response = client.get("/api/v1/devices", headers=bearer(token.token))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"


def test_inactive_user_token_is_401(client, db, admin):
    token = factories.PersonalTokenFactory(user=admin)
    admin.active = False
    db.session.commit()
    assert client.get("/api/v1/devices", headers=bearer(token.token)).status_code == 401


def test_inactive_user_session_is_401(client, db, login_as, operator):
    login_as(operator)
    operator.active = False
    db.session.commit()
    assert client.get("/api/v1/devices").status_code == 401


def test_device_token_cannot_call_people_endpoints(client, device):
    assert client.get("/api/v1/devices", headers=bearer(device.token)).status_code == 401


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "Bearer a b", "pp_token"])
def test_malformed_authorization_is_401(client, header):
    response = client.get("/api/v1/devices", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_token_last_used_is_written_at_most_once_a_minute(client, db, admin):
    token = factories.PersonalTokenFactory(user=admin)
    client.get("/api/v1/devices", headers=bearer(token.token))
    db.session.expire_all()
    first = db.session.get(PersonalToken, token.id).last_used_at
    client.get("/api/v1/devices", headers=bearer(token.token))
    db.session.expire_all()
    assert first is not None
    assert db.session.get(PersonalToken, token.id).last_used_at == first


def test_token_last_used_is_refreshed_after_the_throttle(client, db, admin):
    token = factories.PersonalTokenFactory(user=admin, last_used_at=utcnow() - timedelta(minutes=5))
    client.get("/api/v1/devices", headers=bearer(token.token))
    db.session.expire_all()
    assert utcnow() - db.session.get(PersonalToken, token.id).last_used_at < timedelta(seconds=5)


def test_rotated_device_token_dies_at_once(client, db, device, operator, headers_for):
    old = device.token
    response = client.post(f"/api/v1/devices/{device.id}/token", headers=headers_for(operator))
    assert response.status_code == 200
    new = response.get_json()["token"]
    assert client.post("/api/v1/device/heartbeat", headers=bearer(old)).status_code == 401
    assert client.post("/api/v1/device/heartbeat", headers=bearer(new)).status_code == 200
    assert count(db, Device) == 1


@pytest.fixture
def limited_client(database_url, tmp_path, app):
    """A client of an app whose default limit is 3 requests a minute per address."""
    from portal.extensions import db, limiter
    from tests.conftest import make_app

    limited = make_app(tmp_path / "limited", database_url, RATELIMIT_DEFAULT="3 per minute")
    try:
        with limited.app_context():
            yield limited.test_client()
            db.session.remove()
            db.engine.dispose()
    finally:
        # The limiter is one object for every app the tests make: take the default off again.
        limiter.limit_manager.set_default_limits([])


def test_people_endpoints_follow_a_configured_default_limit(limited_client, admin, headers_for):
    headers = headers_for(admin)
    statuses = [
        limited_client.get("/api/v1/devices", headers=headers).status_code for _ in range(5)
    ]
    assert statuses[-1] == 429
    response = limited_client.get("/api/v1/devices", headers=headers)
    assert response.get_json()["error"]["code"] == "rate_limited"


def test_device_endpoints_are_not_rate_limited(limited_client, device):
    statuses = {
        limited_client.get("/api/v1/device/commands", headers=bearer(device.token)).status_code
        for _ in range(10)
    }
    assert statuses == {200}
