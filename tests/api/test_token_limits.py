"""Personal tokens with an expiry and a read scope, and throttling of bad bearer tokens per
address (SECURITY.md, Tokens and throttling)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
import redis
import time_machine
from sqlalchemy import select

from portal.extensions import db as _db
from portal.models import AuditEvent, PersonalToken, TokenScope, utcnow
from tests import factories
from tests.conftest import bearer, make_app


def cli_token(runner, *args: str) -> str:
    result = runner.invoke(args=["users", "token", *args])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_cli_makes_a_read_token_that_reads_but_may_not_write(client, runner, admin, device):
    token = cli_token(runner, "alice", "--scope", "read")

    assert client.get("/api/v1/devices", headers=bearer(token)).status_code == 200
    response = client.post(
        f"/api/v1/devices/{device.id}/commands", json={"action": "x"}, headers=bearer(token)
    )
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "read_only_token"


def test_cli_token_with_an_expiry_works_until_it_then_401_and_an_audit_event(
    client, db, runner, admin
):
    token = cli_token(runner, "alice", "--expires-days", "2", "--label", "ci")
    row = db.session.scalars(select(PersonalToken)).one()
    assert row.expires_at - utcnow() == pytest.approx(timedelta(days=2), abs=timedelta(minutes=1))

    with time_machine.travel(row.expires_at - timedelta(minutes=1), tick=False):
        assert client.get("/api/v1/devices", headers=bearer(token)).status_code == 200
    with time_machine.travel(row.expires_at, tick=False):
        response = client.get("/api/v1/devices", headers=bearer(token))

    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"
    events = db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.object_type == "personal_token")
    ).all()
    assert "expired_token_used" in events


def test_cli_defaults_are_no_expiry_and_full_scope(db, runner, admin):
    cli_token(runner, "alice")
    row = db.session.scalars(select(PersonalToken)).one()
    assert (row.expires_at, row.scope) == (None, TokenScope.full)


@pytest.mark.parametrize(
    "args", [["--expires-days", "0"], ["--expires-days", "x"], ["--scope", "write"]]
)
def test_cli_refuses_a_bad_expiry_or_scope_and_makes_no_token(db, runner, admin, args):
    result = runner.invoke(args=["users", "token", "alice", *args])

    assert result.exit_code != 0 and "Traceback" not in result.output
    assert db.session.scalars(select(PersonalToken)).all() == []


@pytest.fixture
def bad_token_app(tmp_path, database_url):
    """``bad_token_app(name, **settings)``: another app (worker) allowing 5 bad tokens a
    minute; its connections are closed after the test."""
    made = []

    def make(name: str, **overrides):
        made.append(
            make_app(tmp_path / name, database_url, BAD_TOKEN_LIMIT="5 per minute", **overrides)
        )
        return made[-1]

    yield make
    for other in made:
        with other.app_context():
            _db.session.remove()
            _db.engine.dispose()


@pytest.fixture
def throttled(app, bad_token_app):
    limited = bad_token_app("throttled")
    with limited.app_context():
        yield limited.test_client()
        _db.session.remove()


@pytest.mark.parametrize("token", ["pd_unknown", "pp_unknown", "garbage"])
def test_bad_tokens_from_one_address_get_429_with_retry_after(throttled, token):
    statuses = [
        throttled.get("/api/v1/device/commands", headers=bearer(token)).status_code
        for _ in range(5)
    ]
    assert statuses == [401] * 5

    response = throttled.get("/api/v1/devices", headers=bearer(token))

    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "rate_limited"
    assert 0 < int(response.headers["Retry-After"]) <= 60


def test_a_good_device_is_not_slowed_by_another_addresss_bad_tokens(throttled, device):
    for _ in range(10):
        throttled.get(
            "/api/v1/device/commands",
            headers=bearer("pd_guess"),
            environ_base={"REMOTE_ADDR": "192.0.2.7"},
        )

    statuses = {
        throttled.get("/api/v1/device/commands", headers=bearer(device.token)).status_code
        for _ in range(20)
    }
    assert statuses == {200}


def test_a_revoked_token_counts_as_bad(throttled, db, admin):
    row = factories.PersonalTokenFactory(user=admin, revoked_at=utcnow())
    statuses = [
        throttled.get("/api/v1/devices", headers=bearer(row.token)).status_code for _ in range(6)
    ]
    assert statuses == [401] * 5 + [429]


@pytest.fixture
def redis_prefix():
    client = redis.Redis.from_url("redis://127.0.0.1:6379")
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("needs Redis on 127.0.0.1:6379 (.ci/run starts it)")
    prefix = f"portal-test-{uuid.uuid4().hex[:8]}"
    yield prefix
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


@pytest.mark.parametrize("shared_store", [True, False])
def test_a_worker_started_later_sees_the_bad_tokens_counted_in_redis(
    app, bad_token_app, redis_prefix, shared_store
):
    store = (
        {"RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379", "RATELIMIT_KEY_PREFIX": redis_prefix}
        if shared_store
        else {}  # memory://: each worker counts alone
    )
    first = bad_token_app("first", **store)
    with first.app_context():
        client = first.test_client()
        assert {
            client.get("/api/v1/devices", headers=bearer("pp_no")).status_code for _ in range(5)
        } == {401}

    # Building an app binds the limiter to a new store: a new worker's, with nothing counted
    # in memory, but the same counts in Redis.
    second = bad_token_app("second", **store)
    with second.app_context():
        response = second.test_client().get("/api/v1/devices", headers=bearer("pp_no"))

    assert response.status_code == (429 if shared_store else 401)


def test_with_the_limit_store_away_bad_tokens_are_401_and_logins_still_work(
    app, bad_token_app, operator
):
    from tests.conftest import login

    # Read while the fixture's app is current: a row of its session loaded under another app
    # would borrow that app's engine for a connection its session then holds.
    person = SimpleNamespace(username=operator.username)
    away = bad_token_app("away", RATELIMIT_STORAGE_URI="redis://127.0.0.1:9/0")
    with away.app_context():
        client = away.test_client()
        statuses = {
            client.get("/api/v1/devices", headers=bearer("pp_no")).status_code for _ in range(8)
        }
        login(client, person)
        assert client.get("/admin/").status_code == 200

    assert statuses == {401}
