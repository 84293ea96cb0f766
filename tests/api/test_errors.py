"""Every failure under /api/ is the contract's JSON error, with the right status."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from portal.models import Device
from tests.api.conftest import count


def error_of(response):
    assert response.mimetype == "application/json"
    return response.get_json()["error"]


def test_unknown_route_is_json_404(client):
    response = client.get("/api/v1/nothing/here")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_wrong_method_is_json_405_with_allow(client):
    response = client.put("/api/v1/devices")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_pages_outside_the_api_keep_their_html_404(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"


@pytest.mark.parametrize("raw", ["{", "{'name': 'x'}", "[1,", '"unterminated', "{} {}"])
def test_malformed_json_is_400_invalid_json(client, admin, headers_for, raw):
    response = client.post(
        "/api/v1/devices", data=raw, content_type="application/json", headers=headers_for(admin)
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


def test_empty_body_where_one_is_required_is_400_invalid_json(client, admin, headers_for):
    response = client.post(
        "/api/v1/devices", data="", content_type="application/json", headers=headers_for(admin)
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_body_that_is_not_json_is_415(client, admin, headers_for, content_type):
    kwargs = {"content_type": content_type} if content_type else {}
    response = client.post(
        "/api/v1/devices", data='{"name": "x"}', headers=headers_for(admin), **kwargs
    )
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_json_with_charset_is_accepted(client, admin, headers_for):
    response = client.post(
        "/api/v1/devices",
        data='{"name": "board"}',
        content_type="application/json; charset=utf-8",
        headers=headers_for(admin),
    )
    assert response.status_code == 201


def test_body_over_the_limit_is_413(client, app, db, device, headers_for):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    big = '{"readings": [' + ", ".join(['{"metric": "t", "value": 1}'] * 100) + "]}"
    response = client.post(
        "/api/v1/device/readings",
        data=big,
        content_type="application/json",
        headers={"Authorization": f"Bearer {device.token}"},
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": 5}, "name"),
        ({"name": "x", "enabled": "yes"}, "enabled"),
        ({"name": "x\u0000y"}, "name"),
        ({}, "name"),
    ],
)
def test_bad_values_are_422_naming_each_field(client, admin, headers_for, body, field):
    response = client.post("/api/v1/devices", json=body, headers=headers_for(admin))
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == [field]


def test_top_level_array_is_422(client, admin, headers_for):
    response = client.post("/api/v1/devices", json=[{"name": "x"}], headers=headers_for(admin))
    assert response.status_code == 422
    assert list(error_of(response)["fields"]) == ["body"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity"])
def test_non_finite_number_in_a_payload_is_422(client, admin, device, headers_for, literal):
    raw = f'{{"action": "relay.on", "payload": {{"level": [1, {literal}]}}}}'
    response = client.post(
        f"/api/v1/devices/{device.id}/commands",
        data=raw,
        content_type="application/json",
        headers=headers_for(admin),
    )
    assert response.status_code == 422
    assert list(error_of(response)["fields"]) == ["payload"]


def test_errors_other_than_validation_carry_no_fields(client):
    assert "fields" not in error_of(client.get("/api/v1/devices/1"))


def test_no_credentials_is_401_with_www_authenticate(client):
    response = client.get("/api/v1/devices")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert error_of(response)["code"] == "not_authenticated"


def test_session_write_without_csrf_header_is_400_csrf_failed(client, db, login_as, admin):
    login_as(admin)
    response = client.post("/api/v1/devices", json={"name": "board"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "csrf_failed"
    assert count(db, Device) == 0


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/devices/99999999999999999999",
        "/api/v1/commands/9223372036854775808",
        "/api/v1/schedules/2147483648",
        "/api/v1/devices/0",
    ],
)
def test_ids_out_of_range_are_404_not_500(client, admin, headers_for, path):
    assert client.get(path, headers=headers_for(admin)).status_code == 404


def test_an_unexpected_error_is_json_500_not_html(client, admin, headers_for, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("portal.api.devices.get_device_for", broken)
    response = client.get("/api/v1/devices/1", headers=headers_for(admin))
    assert response.status_code == 500
    assert error_of(response)["code"] == "internal_error"


def _drop_every_connection(db) -> int:
    """What a database restart does to the portal: the server ends each of its sessions."""
    db.session.remove()
    with db.engine.connect() as conn:
        me = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    killer = create_engine(db.engine.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with killer.connect() as conn:
        dropped = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
    killer.dispose()
    assert me is not None
    return dropped


def test_a_dropped_database_connection_is_one_503_then_the_pool_recovers(
    db, client, device_headers
):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("a server that drops connections: PostgreSQL only")
    assert client.get("/api/v1/device/commands", headers=device_headers).status_code == 200
    assert _drop_every_connection(db) >= 1
    response = client.get("/api/v1/device/commands", headers=device_headers)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert error_of(response)["code"] == "database_unavailable"
    assert client.get("/api/v1/device/commands", headers=device_headers).status_code == 200
    # The health check meets the dead connection the same way, and recovers the same way.
    _drop_every_connection(db)
    assert client.get("/healthz").status_code == 503
    assert client.get("/healthz").status_code == 200
