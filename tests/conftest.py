"""Fixtures: the app on SQLite (and PostgreSQL when PORTAL_TEST_POSTGRES_URL is set), clients,
personas (admin, operator, other_operator, viewer) and helpers to log in and build headers.

Each test run makes its own databases and drops them after; each test starts from empty tables.
"""

from __future__ import annotations

import os
import re
import time
import uuid

import pytest
from flask import g
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from portal import create_app
from portal.extensions import db as _db
from portal.models import Role
from tests import factories

PG_ENV = "PORTAL_TEST_POSTGRES_URL"
REQUIRE_PG_ENV = "PORTAL_TEST_REQUIRE_POSTGRES"


def _backends() -> list:
    pg = pytest.param("postgresql", marks=pytest.mark.postgres, id="postgresql")
    return ["sqlite", pg]


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh PostgreSQL database for this run, dropped at the end."""
    base = os.environ.get(PG_ENV)
    if not base:
        if os.environ.get(REQUIRE_PG_ENV):
            pytest.fail(f"{REQUIRE_PG_ENV} is set but {PG_ENV} is not")
        pytest.skip(
            f"PostgreSQL tests need {PG_ENV} (e.g. postgresql+psycopg://postgres@"
            "127.0.0.1:5432/test); .ci/run sets it"
        )
    url = make_url(base)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    name = f"portal_test_{uuid.uuid4().hex[:12]}"
    admin_engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin_engine.connect() as conn:
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin_engine.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory):
    return "sqlite:///" + str(tmp_path_factory.mktemp("db") / "portal.sqlite3")


@pytest.fixture(scope="session", params=_backends())
def database_url(request):
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return request.getfixturevalue("sqlite_url")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database(request, tmp_path):
    """A database with no tables at all, of each kind (for migrations and installs); a
    PostgreSQL one is created for the test and dropped after."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/empty.sqlite3"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        if os.environ.get(REQUIRE_PG_ENV):
            pytest.fail(f"{REQUIRE_PG_ENV} is set but {PG_ENV} is not")
        pytest.skip(f"PostgreSQL tests need {PG_ENV}")
    url = make_url(base).set(drivername="postgresql+psycopg")
    name = f"portal_empty_{uuid.uuid4().hex[:10]}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield url.set(database=name).render_as_string(hide_password=False)
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    engine.dispose()


_schema_made: set[str] = set()


def make_app(instance_path, database_url, **overrides):
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "DATABASE_URL": database_url,
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        "RATELIMIT_STORAGE_URI": "memory://",
        "INSTANCE_PATH": str(instance_path),
        **overrides,
    }
    app = create_app(config)
    app.before_request_funcs.setdefault(None, []).insert(0, _forget_request_globals)
    return app


def _forget_request_globals() -> None:
    # The ``app`` fixture holds one app context for the whole test, and a request reuses the
    # context it finds, so ``g`` would outlive a request: Flask-WTF would hand the CSRF token it
    # cached there for one browser (client) to the next, and Flask-Login the user it loaded.
    # In production each request has its own ``g``.
    for name in list(g):
        g.pop(name)


@pytest.fixture
def app(database_url, tmp_path):
    app = make_app(tmp_path, database_url)
    with app.app_context():
        if database_url not in _schema_made:
            _db.drop_all()
            _db.create_all()
            _schema_made.add(database_url)
        yield app
        _db.session.remove()
        _truncate()
        _db.engine.dispose()


def _truncate() -> None:
    tables = [t.name for t in reversed(_db.metadata.sorted_tables)]
    with _db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(
                text(
                    "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
                )
            )
        else:
            for table in tables:
                conn.execute(text(f'DELETE FROM "{table}"'))
            conn.execute(text("DELETE FROM sqlite_sequence")) if conn.execute(
                text("SELECT 1 FROM sqlite_master WHERE name='sqlite_sequence'")
            ).first() else None


@pytest.fixture
def db(app):
    return _db


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def admin(app):
    return factories.UserFactory(username="alice", role=Role.admin)


@pytest.fixture
def operator(app):
    return factories.UserFactory(username="oscar", role=Role.operator)


@pytest.fixture
def other_operator(app):
    return factories.UserFactory(username="olga", role=Role.operator)


@pytest.fixture
def viewer(app):
    return factories.UserFactory(username="vera", role=Role.viewer)


CSRF_RE = re.compile(r'<input[^>]*name="csrf_token"[^>]*>')


def csrf_token(client, path: str = "/login") -> str:
    """The CSRF token from a page's form (the session's token, valid for every form)."""
    html = client.get(path).get_data(as_text=True)
    tag = CSRF_RE.search(html)
    assert tag, f"no csrf_token on {path}"
    return re.search(r'value="([^"]+)"', tag.group(0)).group(1)


def login(client, user, password: str = factories.PASSWORD):
    token = csrf_token(client)
    response = client.post(
        "/login", data={"username": user.username, "password": password, "csrf_token": token}
    )
    assert response.status_code == 302, "login failed"
    return client


@pytest.fixture
def login_as(client):
    """``login_as(user)`` logs the test client in and returns it."""
    return lambda user: login(client, user)


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def device(operator):
    return factories.DeviceFactory(owner=operator, name="oscar-board")


@pytest.fixture
def other_device(other_operator):
    return factories.DeviceFactory(owner=other_operator, name="olga-board")


@pytest.fixture
def mqtt_stack(mqtt_broker, database_url, tmp_path):
    """Broker, app pointed at it (each database), an owner and a running bridge: see
    tests/mqtt_stack.py."""
    from tests.mqtt_stack import stack

    yield from stack(mqtt_broker, database_url, tmp_path)


@pytest.fixture
def mqtt_broker(tmp_path):
    """A Mosquitto of this test's own (see tests/mqtt_broker.py), stopped after."""
    from tests.mqtt_broker import Broker, require_mosquitto

    require_mosquitto()
    broker = Broker(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()
