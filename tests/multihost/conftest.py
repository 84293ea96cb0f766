"""The multi-host cluster: two web hosts (gunicorn) and two schedulers (``flask scheduler run``),
each in its own network namespace, on one PostgreSQL database, the login limiter on Redis.

Needs root and ``ip netns``; skips with the reason otherwise, except under CI
(PORTAL_TEST_REQUIRE_MULTIHOST=1), where it fails. Each run makes its own database, namespaces,
bridge and Redis key prefix, and removes them all afterwards, whatever happened.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import requests
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import URL, Engine, make_url

from portal.models import SchedulerPass
from tests.conftest import PG_ENV
from tests.multihost.cluster import (
    BIN,
    GATEWAY,
    ROOT,
    CommandFailed,
    Network,
    Process,
    Relay,
    exclusive,
    remove_stale,
    subnet_in_use,
    wait_for,
)

REQUIRE_ENV = "PORTAL_TEST_REQUIRE_MULTIHOST"
REDIS_ENV = "PORTAL_TEST_REDIS_URL"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
ADMIN, ADMIN_PASSWORD = "mh-admin", "mh-admin-password-1"
# The user whose failed logins are counted (nobody logs in as them successfully).
TARGET, TARGET_PASSWORD = "mh-target", "mh-target-password-1"
DEVICES = 6
HOST_NAMES = ("web1", "web2", "scheduler1", "scheduler2")
WEB_PORT = 8000
START_TIMEOUT = 60.0


def unavailable(reason: str):
    """Skip with ``reason``; fail instead under CI, which must run these tests."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but the multi-host test cannot run: {reason}")
    pytest.skip(f"multi-host test: {reason}")


@dataclass
class Cluster:
    web: list[Process]
    schedulers: list[Process]
    relay: Relay
    engine: Engine
    admin_token: str = ""
    devices: list[dict] = field(default_factory=list)

    def scheduler_passes(self, process: Process) -> list:
        """``(started_at, fired)`` of each pass ``process`` recorded (host ends in its pid)."""
        table = SchedulerPass.__table__
        query = select(table.c.started_at, table.c.fired).where(
            table.c.host.like(f"%:{process.pid}")
        )
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query)]

    def log_tails(self) -> str:
        return "\n".join(
            f"--- {process.name} ({process.log_path}) ---\n{process.tail()}"
            for process in [*self.web, *self.schedulers, self.relay]
        )


_running: list[Cluster] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and _running:
        report.sections.append(("multi-host process logs (tails)", _running[-1].log_tails()))
    return report


def _check_prerequisites() -> tuple[str, str]:
    """The PostgreSQL and Redis URLs, once everything the test needs is known to be there."""
    base = os.environ.get(PG_ENV)
    if not base:
        unavailable(f"needs {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    if os.geteuid() != 0:
        unavailable("needs root to make network namespaces (ip netns add)")
    if shutil.which("ip") is None:
        unavailable("needs the ip command (iproute2)")
    for tool in ("gunicorn", "flask"):
        if not (BIN / tool).exists():
            unavailable(f"needs {BIN / tool} (pip install -e '.[prod]')")
    redis_url = os.environ.get(REDIS_ENV, DEFAULT_REDIS)
    try:
        with redis.Redis.from_url(redis_url, socket_timeout=3) as client:
            client.ping()
    except redis.RedisError as exc:
        unavailable(f"needs Redis at {redis_url} ({REDIS_ENV}): {exc}")
    return base, redis_url


def _start_cli(env: dict[str, str], *args: str) -> tuple[subprocess.Popen, list[str]]:
    popen = subprocess.Popen(
        [str(BIN / "flask"), *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return popen, list(args)


def _finish_cli(started: tuple[subprocess.Popen, list[str]]) -> str:
    popen, args = started
    try:
        out, err = popen.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        popen.kill()
        out, err = popen.communicate()
    assert popen.returncode == 0, f"flask {' '.join(args)} failed:\n{out}{err}"
    return out


def _run_cli(env: dict[str, str], *args: str) -> str:
    return _finish_cli(_start_cli(env, *args))


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(FLASK_APP="portal", PYTHONUNBUFFERED="1")
    return env


def _redis_through(redis_url: str, host: str, port: int) -> str:
    parts = urlsplit(redis_url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _create_database(url: URL, name: str) -> Engine:
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return admin


def _drop_database(admin: Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _delete_redis_keys(redis_url: str, prefix: str) -> None:
    with redis.Redis.from_url(redis_url, socket_timeout=3) as client:
        keys = list(client.scan_iter(match=f"*{prefix}*", count=500))[:10_000]
        if keys:
            client.delete(*keys)


def _control_socket(path) -> list[str]:
    """Its own control socket for a gunicorn that has one (27 and later), as on a host of its
    own: by default every gunicorn of a user on a machine takes the same path."""
    major = int(importlib.metadata.version("gunicorn").split(".")[0])
    return ["--control-socket", str(path)] if major >= 27 else []


def _healthy(process: Process) -> bool:
    try:
        return requests.get(process.url + "/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _still_running(process: Process):
    def check() -> None:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited early:\n{process.tail()}")

    return check


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two web hosts and two schedulers, up and sharing one database, with devices to load."""
    base_url, redis_url = _check_prerequisites()
    run_id = secrets.token_hex(3)
    logs = tmp_path_factory.mktemp("multihost-logs")
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive(timeout=240))
        except CommandFailed as exc:
            unavailable(str(exc))
        remove_stale()
        if in_use := subnet_in_use():
            unavailable(f"the test subnet is already in use on this machine: {in_use}")

        network = Network(run_id)
        stack.callback(network.remove)
        try:
            network.create_bridge()
            hosts = {name: network.add_host(i, name) for i, name in enumerate(HOST_NAMES, 1)}
        except CommandFailed as exc:
            unavailable(f"cannot make network namespaces and veth pairs: {exc}")

        url = make_url(base_url)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        database = f"portal_mh_{run_id}"
        admin_engine = _create_database(url, database)
        stack.callback(_drop_database, admin_engine, database)
        direct_url = url.set(database=database)
        engine = create_engine(direct_url)
        stack.callback(engine.dispose)

        pg_target = f"{url.host or '127.0.0.1'}:{url.port or 5432}"
        redis_parts = urlsplit(redis_url)
        redis_target = f"{redis_parts.hostname or '127.0.0.1'}:{redis_parts.port or 6379}"
        relay = Relay([pg_target, redis_target], logs / "relay.log")
        stack.callback(relay.stop)
        relay.start()

        key_prefix = f"pmh-{run_id}"
        stack.callback(_delete_redis_keys, redis_url, key_prefix)
        secret_key = "mh-" + secrets.token_hex(32)

        # The schema comes from the migrations, the first user and token from the CLI, all run
        # from the root namespace straight against the database.
        cli_env = {
            **_base_env(),
            "PORTAL_DATABASE_URL": direct_url.render_as_string(hide_password=False),
            "PORTAL_SECRET_KEY": secret_key,
        }
        _run_cli(cli_env, "db", "upgrade")

        # What the hosts see: the database and Redis through the relay, the same secret key.
        host_env = {
            **_base_env(),
            "PORTAL_DATABASE_URL": url.set(
                database=database, host=GATEWAY, port=relay.ports[pg_target]
            ).render_as_string(hide_password=False),
            "PORTAL_SECRET_KEY": secret_key,
            "PORTAL_RATELIMIT_STORAGE_URI": _redis_through(
                redis_url, GATEWAY, relay.ports[redis_target]
            ),
            "PORTAL_RATELIMIT_KEY_PREFIX": key_prefix,
        }
        web = [
            Process(
                name,
                [
                    str(BIN / "gunicorn"),
                    "--workers",
                    "2",
                    "--bind",
                    f"0.0.0.0:{WEB_PORT}",
                    "--graceful-timeout",
                    "5",
                    *_control_socket(logs / f"{name}.ctl"),
                    "--chdir",
                    str(ROOT),
                    "wsgi:app",
                ],
                host_env,
                logs / f"{name}.log",
                netns=hosts[name][0],
                url=f"http://{hosts[name][1]}:{WEB_PORT}",
            )
            for name in ("web1", "web2")
        ]
        schedulers = [
            Process(
                name,
                [str(BIN / "flask"), "scheduler", "run", "--interval", "1"],
                host_env,
                logs / f"{name}.log",
                netns=hosts[name][0],
            )
            for name in ("scheduler1", "scheduler2")
        ]
        cluster = Cluster(web, schedulers, relay, engine)
        _running.append(cluster)
        stack.callback(_running.remove, cluster)
        for process in [*web, *schedulers]:
            stack.callback(process.stop)
            process.start()
        # The people, while the hosts boot.
        users = [
            _start_cli(cli_env, "users", "create", name, "--role", role, "--password", password)
            for name, role, password in (
                (ADMIN, "admin", ADMIN_PASSWORD),
                (TARGET, "operator", TARGET_PASSWORD),
            )
        ]
        for started in users:
            _finish_cli(started)
        cluster.admin_token = _run_cli(cli_env, "users", "token", ADMIN).strip()
        for process in web:
            wait_for(
                lambda p=process: _healthy(p),
                START_TIMEOUT,
                f"{process.name} answering /healthz",
                check=_still_running(process),
            )
        for process in schedulers:
            wait_for(
                lambda p=process: cluster.scheduler_passes(p),
                START_TIMEOUT,
                f"{process.name} recording a pass",
                check=_still_running(process),
            )
        with requests.Session() as session:
            for i in range(DEVICES):
                host = web[i % len(web)]
                response = session.post(
                    host.url + "/api/v1/devices",
                    json={"name": f"mh-board-{i}", "kind": "esp32"},
                    headers={"Authorization": f"Bearer {cluster.admin_token}"},
                    timeout=10,
                )
                assert response.status_code == 201, response.text
                cluster.devices.append(response.json())
        started = time.monotonic()
        yield cluster
        print(f"\nmulti-host cluster ran {time.monotonic() - started:.1f} s; logs in {logs}")
