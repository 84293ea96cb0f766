"""Faults of the machine answer as faults, never 500: a full disk is 507 and a database that
refuses writes is 503, each JSON with ``Retry-After`` and one warning line in the log; nothing
is stored half, ``/healthz`` and the login page keep answering, and the portal recovers by
itself when the fault goes.

The SQLite tests put the database on a small tmpfs that they mount, fill or make read-only
(chmod means nothing to root, so "read-only" is a read-only mount). They need root and skip
without it, unless PORTAL_TEST_REQUIRE_ROOT=1 (CI), which makes that a failure.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from portal.extensions import db as _db
from portal.models import AuditEvent, Command, Device, IdempotencyRecord, Reading, Role
from tests import factories
from tests.conftest import bearer, csrf_token, login, make_app

REQUIRE_ROOT_ENV = "PORTAL_TEST_REQUIRE_ROOT"
DISK_SIZE = "2m"
ONE = {"readings": [{"metric": "temperature", "value": 21.5}]}
THOUSAND = {"readings": [{"metric": "temperature", "value": float(i)} for i in range(1000)]}
COMMAND = {"action": "relay.on", "payload": {"seconds": 30}, "expires_in": 600}
DISK_FULL = (507, "insufficient_storage", "30")


# ---- the disk ----------------------------------------------------------------------------


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=False)


def _cannot(reason: str) -> None:
    if os.environ.get(REQUIRE_ROOT_ENV) == "1":
        pytest.fail(f"{REQUIRE_ROOT_ENV}=1 but {reason}")
    pytest.skip(reason)


def _mounts(path: Path) -> int:
    """How many mounts are stacked at ``path``."""
    with open("/proc/self/mountinfo") as mountinfo:
        return sum(1 for line in mountinfo if line.split()[4] == str(path))


class Disk:
    """A small tmpfs holding the database: filled, emptied, made read-only and writable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.database = path / "portal.sqlite3"
        self.wal = path / "portal.sqlite3-wal"
        self.filler = path / "filler"
        self._holder: sqlite3.Connection | None = None

    def fill(self, leave: int = 0) -> None:
        """Write a filler file until the disk is full, then give back ``leave`` bytes (tmpfs
        hands out whole pages: with none left, not a byte more fits)."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, bytes(64 * 1024))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        finally:
            os.close(fd)
        if leave:
            os.truncate(self.filler, self.filler.stat().st_size - leave)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def hold_open(self) -> None:
        """Keep the database open elsewhere (the scheduler, say), so that its -wal and -shm
        files stay: without them SQLite cannot even read a WAL database on a read-only disk."""
        self._holder = sqlite3.connect(self.database)
        self._holder.execute("SELECT count(*) FROM devices").fetchall()

    def remount(self, mode: str) -> None:
        result = _run("mount", "-o", f"remount,{mode}", str(self.path))
        assert result.returncode == 0, result.stderr

    def remount_writable(self) -> None:
        self.remount("rw")

    def cover_read_only(self) -> None:
        """Lay a read-only view of the folder over it: files already open stay writable, what
        is opened from now on is read-only (as chmod 0444 on the file and its folder does for
        a user other than root)."""
        result = _run("mount", "--bind", "-o", "ro", str(self.path), str(self.path))
        assert result.returncode == 0, result.stderr

    def uncover(self) -> None:
        # Lazily: connections the portal opened through the read-only view may still be open.
        result = _run("umount", "--lazy", str(self.path))
        assert result.returncode == 0, result.stderr

    def restore(self) -> None:
        """Undo what the test did to the disk (it may have failed half-way)."""
        if self._holder is not None:
            self._holder.close()
            self._holder = None
        while _mounts(self.path) > 1:
            self.uncover()
        if _mounts(self.path) == 1:
            self.remount_writable()
        self.free()

    def unmount(self) -> None:
        for _attempt in range(3):
            if not os.path.ismount(self.path):
                return
            if _run("umount", str(self.path)).returncode != 0:
                _run("umount", "--lazy", str(self.path))
        assert not os.path.ismount(self.path), f"{self.path} is still mounted"


@pytest.fixture
def disk(tmp_path):
    """A 2 MiB tmpfs, unmounted after the test whatever happened (skips without root)."""
    if os.geteuid() != 0:
        _cannot("mounting a tmpfs needs root")
    path = tmp_path / "disk"
    path.mkdir()
    result = _run("mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(path))
    if result.returncode != 0:
        _cannot(f"cannot mount a tmpfs: {result.stderr.strip()}")
    disk = Disk(path)
    try:
        yield disk
    finally:
        disk.restore()
        disk.unmount()


@pytest.fixture
def disk_app(disk, tmp_path):
    """The portal with its SQLite database on ``disk``."""
    app = make_app(tmp_path / "instance", f"sqlite:///{disk.database}")
    with app.app_context():
        _db.create_all()
        try:
            yield app
        finally:
            disk.restore()
            _db.session.remove()
            _db.engine.dispose()


# ---- what clients do and see ---------------------------------------------------------------


class Fleet:
    """An operator with a personal token, their device and two queued commands, each caller
    seen a moment ago, so that a request writes only what it is about (no throttled touch)."""

    def __init__(self, client) -> None:
        operator = factories.UserFactory(username="oscar", role=Role.operator)
        device = factories.DeviceFactory(owner=operator, name="oscar-board", firmware="1.0")
        self.device_id = device.id
        self.to_poll = factories.CommandFactory(device=device).id
        self.to_report = factories.CommandFactory(device=device).id
        self.device = bearer(device.token)
        self.person = bearer(factories.PersonalTokenFactory(user=operator).token)
        _db.session.remove()
        assert client.post("/api/v1/device/heartbeat", headers=self.device).status_code == 200
        assert client.get("/api/v1/devices", headers=self.person).status_code == 200

    def upload(self, client, key: str, body: dict = THOUSAND):
        headers = {**self.device, "Idempotency-Key": key}
        return client.post("/api/v1/device/readings", json=body, headers=headers)


# Every write a device or a person makes; each takes an Idempotency-Key prefix where it can.
WRITES = {
    "upload one": lambda client, fleet, key: fleet.upload(client, f"{key}-1", ONE),
    "upload 1000": lambda client, fleet, key: fleet.upload(client, f"{key}-1000"),
    "heartbeat": lambda client, fleet, key: client.post(
        "/api/v1/device/heartbeat", json={"firmware": "2.0"}, headers=fleet.device
    ),
    "result": lambda client, fleet, key: client.post(
        f"/api/v1/device/commands/{fleet.to_report}/result",
        json={"status": "succeeded"},
        headers=fleet.device,
    ),
    "poll": lambda client, fleet, key: client.get("/api/v1/device/commands", headers=fleet.device),
    "command": lambda client, fleet, key: client.post(
        f"/api/v1/devices/{fleet.device_id}/commands",
        json=COMMAND,
        headers={**fleet.person, "Idempotency-Key": f"{key}-cmd"},
    ),
}
SUCCESS = {
    "upload one": 201,
    "upload 1000": 201,
    "heartbeat": 200,
    "result": 200,
    "poll": 200,
    "command": 201,
}


def _warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def _assert_refused(response, caplog, status: int, code: str, retry_after: str) -> None:
    """The contract's JSON error with Retry-After, and exactly one line in the log for it: a
    warning without a traceback, naming the request and the answer."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] == code
    assert response.headers["Retry-After"] == retry_after
    lines = _warnings(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.WARNING
    assert lines[0].exc_info is None
    assert "\n" not in lines[0].getMessage()
    assert f"answered {status} {code}" in lines[0].getMessage()


def _assert_every_write_refused(client, fleet, caplog, status, code, retry_after) -> None:
    for name, send in WRITES.items():
        caplog.clear()
        response = send(client, fleet, "k")
        try:
            _assert_refused(response, caplog, status, code, retry_after)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc


def _assert_recovered(client, fleet, caplog) -> None:
    """The same requests, same keys, now succeed and are stored once: no restart, no log."""
    caplog.clear()
    answers = {name: send(client, fleet, "k") for name, send in WRITES.items()}
    assert {name: r.status_code for name, r in answers.items()} == SUCCESS
    assert not any("Idempotent-Replayed" in r.headers for r in answers.values())
    assert [c["id"] for c in answers["poll"].get_json()["commands"]] == [fleet.to_poll]
    assert _warnings(caplog) == []
    replay = fleet.upload(client, "k-1000")
    assert (replay.status_code, replay.headers.get("Idempotent-Replayed")) == (201, "true")
    assert _count(Reading) == 1001
    assert _count(IdempotencyRecord) == 3


def _count(model) -> int:
    try:
        return _db.session.query(model).count()
    finally:
        _db.session.rollback()


def _state() -> dict:
    """What the writes could have changed."""
    try:
        device = _db.session.query(Device).one()
        return {
            "readings": _db.session.query(Reading).count(),
            "keys": _db.session.query(IdempotencyRecord).count(),
            "audit": _db.session.query(AuditEvent).count(),
            "commands": sorted(
                (c.id, c.status.value, c.attempts) for c in _db.session.query(Command)
            ),
            "device": (device.firmware, device.last_seen_at),
        }
    finally:
        _db.session.rollback()


def _assert_answering(client, health: int = 200) -> None:
    response = client.get("/healthz")
    status = "ok" if health == 200 else "unavailable"
    assert (response.status_code, response.get_json()) == (health, {"status": status})
    assert client.get("/login").status_code == 200


def _empty_wal() -> None:
    # Every write must find new space. (One that fits into the frames of an old WAL file
    # would still succeed on a full disk, and the test would prove nothing.)
    with _db.engine.connect() as conn:
        busy, *_ = conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)")).one()
    assert busy == 0


# ---- SQLite on a full disk ---------------------------------------------------------------


def test_a_full_disk_answers_507_stores_nothing_and_recovers_by_itself(disk, disk_app, caplog):
    client = disk_app.test_client()
    fleet = Fleet(client)
    before = _state()
    _empty_wal()
    disk.fill()

    _assert_every_write_refused(client, fleet, caplog, *DISK_FULL)
    assert _state() == before
    _assert_answering(client)  # reads work on a full disk: the database answers
    assert disk.database.exists() and disk.wal.exists()

    disk.free()
    _assert_recovered(client, fleet, caplog)


def test_an_upload_that_fills_the_disk_midway_stores_none_of_its_readings(disk, disk_app, caplog):
    client = disk_app.test_client()
    fleet = Fleet(client)
    _empty_wal()
    disk.fill(leave=16 * 1024)  # room for a few pages of the batch, not for all of it

    _assert_refused(fleet.upload(client, "batch"), caplog, *DISK_FULL)
    assert disk.wal.stat().st_size > 0  # it did start writing
    assert _count(Reading) == 0
    assert _count(IdempotencyRecord) == 0

    disk.free()
    response = fleet.upload(client, "batch")
    assert (response.status_code, response.get_json()) == (201, {"accepted": 1000})
    assert "Idempotent-Replayed" not in response.headers
    assert _count(Reading) == 1000


PAGES = {
    "admin form": ("/admin/devices/new/", {"name": "boiler", "kind": "esp32"}),
    "logout": ("/logout", {}),
}


@pytest.mark.parametrize("page", list(PAGES))
def test_a_page_outside_the_api_gets_a_plain_507_page_not_a_500(disk, disk_app, caplog, page):
    path, fields = PAGES[page]
    client = disk_app.test_client()
    login(client, factories.UserFactory(username="oscar", role=Role.operator))
    form = {**fields, "csrf_token": csrf_token(client, "/admin/devices/")}
    audited = _count(AuditEvent)
    _empty_wal()
    disk.fill()

    caplog.clear()
    response = client.post(path, data=form)
    assert response.status_code == 507
    assert response.mimetype == "text/html"
    assert response.headers["Retry-After"] == "30"
    assert len(_warnings(caplog)) == 1
    assert _count(AuditEvent) == audited

    disk.free()
    assert client.post(path, data=form).status_code == 302
    assert _count(AuditEvent) == audited + 1  # the device's creation, or the logout


# ---- SQLite read-only ----------------------------------------------------------------------


def _remount_read_only(disk: Disk) -> None:
    # Linux remounts read-only only when no file on it is open for writing: the portal's
    # connections go first, as after a restart onto a read-only disk.
    _db.session.remove()
    _db.engine.dispose()
    disk.remount("ro")


def _cover_read_only(disk: Disk) -> None:
    # Another process keeps the database open; the portal's connections from now on (a new
    # worker, a pool that replaced its own) open it read-only.
    disk.hold_open()
    _db.session.remove()
    _db.engine.dispose()
    disk.cover_read_only()


READ_ONLY_WAYS = {
    # SQLite cannot open a WAL database whose -shm file it can neither find nor make: nothing
    # reads either, so /healthz says unavailable too.
    "disk-read-only": (_remount_read_only, Disk.remount_writable, "database_unavailable", 503),
    # Reads work and writes meet SQLITE_READONLY; /healthz stays ok.
    "file-read-only": (_cover_read_only, Disk.uncover, "database_read_only", 200),
}


@pytest.mark.parametrize("way", list(READ_ONLY_WAYS))
def test_a_read_only_database_answers_503_stores_nothing_and_recovers_by_itself(
    disk, disk_app, caplog, way
):
    make_read_only, make_writable, code, health = READ_ONLY_WAYS[way]
    client = disk_app.test_client()
    fleet = Fleet(client)
    before = _state()
    make_read_only(disk)

    _assert_every_write_refused(client, fleet, caplog, 503, code, "5")
    _assert_answering(client, health)

    make_writable(disk)
    assert _state() == before
    _assert_recovered(client, fleet, caplog)


# ---- PostgreSQL read-only ------------------------------------------------------------------


def _set_read_only(db, on: bool) -> None:
    """What a database that refuses writes looks like to the portal's new sessions."""
    name = db.engine.url.database
    # From the maintenance database: a session in the read-only one could not undo it.
    url = db.engine.url.set(database="postgres")
    admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    setting = (
        "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
    )
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" {setting}'))
    admin.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_read_only_postgresql_database_answers_503_and_recovers_by_itself(
    app, db, client, caplog
):
    fleet = Fleet(client)
    before = _state()
    _set_read_only(db, True)
    try:
        db.session.remove()
        db.engine.dispose()  # the setting applies to sessions that start from now on

        _assert_every_write_refused(client, fleet, caplog, 503, "database_read_only", "5")
        devices = client.get("/api/v1/devices", headers=fleet.person)
        assert (devices.status_code, len(devices.get_json()["items"])) == (200, 1)
        _assert_answering(client)
        assert _state() == before
    finally:
        _set_read_only(db, False)
    _assert_recovered(client, fleet, caplog)


# ---- the driver's codes ------------------------------------------------------------------


CASES = [
    pytest.param("sqlite", 13, "database or disk is full", *DISK_FULL[:2], id="SQLITE_FULL"),
    pytest.param("sqlite", 8, "readonly", 503, "database_read_only", id="SQLITE_READONLY"),
    pytest.param("sqlite", 778, "disk I/O", 503, "database_unavailable", id="SQLITE_IOERR_WRITE"),
    pytest.param("sqlite", 14, "cannot open", 503, "database_unavailable", id="SQLITE_CANTOPEN"),
    pytest.param("sqlite", 5, "database is locked", 503, "database_busy", id="SQLITE_BUSY"),
    pytest.param("sqlite", 1, "no such table: x", 500, "internal_error", id="SQLITE_ERROR"),
    pytest.param("postgres", "53100", "could not extend", *DISK_FULL[:2], id="disk_full"),
    pytest.param("postgres", "53200", "out of memory", 503, "database_unavailable", id="oom"),
    pytest.param("postgres", "53300", "too many", 503, "database_unavailable", id="connections"),
    pytest.param("postgres", "25006", "read-only", 503, "database_read_only", id="read_only"),
    pytest.param("postgres", "57P03", "starting up", 503, "database_unavailable", id="starting"),
    pytest.param("postgres", "42P01", "undefined table", 500, "internal_error", id="42P01"),
]


def _driver_error(driver: str, code, message: str) -> Exception:
    if driver == "postgres":
        return pytest.importorskip("psycopg.errors").lookup(code)(message)
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    error.sqlite_errorname = f"code {code}"
    return error


@pytest.mark.parametrize("driver, code, message, status, answer", CASES)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_database_errors_are_told_apart_by_the_drivers_code(
    client, device_headers, monkeypatch, caplog, driver, code, message, status, answer
):
    def refuse(*args, **kwargs):
        raise OperationalError("UPDATE devices", {}, _driver_error(driver, code, message))

    monkeypatch.setattr("portal.api.device.devices.record_heartbeat", refuse)
    caplog.clear()
    response = client.post("/api/v1/device/heartbeat", headers=device_headers)
    assert (response.status_code, response.get_json()["error"]["code"]) == (status, answer)
    assert ("Retry-After" in response.headers) == (status != 500)
    assert len(_warnings(caplog)) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_connection_that_met_a_read_only_database_is_not_pooled_again(db, client, device_headers):
    """However a connection came to refuse writes unseen (here PRAGMA query_only), its first
    SQLITE_READONLY drops it, so the retry gets a fresh connection."""
    refusing = [True]

    def query_only(dbapi_connection, _record):
        if refusing:
            dbapi_connection.execute("PRAGMA query_only = ON")

    event.listen(db.engine, "connect", query_only)
    try:
        db.session.remove()
        db.engine.dispose()
        response = client.post("/api/v1/device/heartbeat", headers=device_headers)
        assert (response.status_code, response.get_json()["error"]["code"]) == (
            503,
            "database_read_only",
        )
        refusing.clear()
        assert client.post("/api/v1/device/heartbeat", headers=device_headers).status_code == 200
    finally:
        refusing.clear()
        event.remove(db.engine, "connect", query_only)
        db.session.remove()
        db.engine.dispose()
