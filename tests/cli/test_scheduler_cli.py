"""``flask scheduler tick`` and ``flask scheduler run``, in-process and as real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from portal.cli.demo_schedules import add_demo_schedules
from portal.models import Command, Schedule, SchedulerPass, utcnow
from tests import factories
from tests.conftest import bearer

FLASK = str(Path(sys.executable).with_name("flask"))


def add_due_schedules(db, device, count: int, due_at) -> None:
    rows = [
        {
            "name": f"race-{i}",
            "device_id": device.id,
            "action": "relay.on",
            "payload": {},
            "kind": "interval",
            "interval_seconds": 3600,
            "timezone": "UTC",
            "enabled": True,
            "misfire_grace_seconds": 300,
            "command_ttl_seconds": 3600,
            "next_fire_at": due_at,
            "created_at": due_at - timedelta(hours=1),
            "updated_at": due_at,
            "fire_count": 0,
            "skipped_count": 0,
        }
        for i in range(count)
    ]
    db.session.execute(insert(Schedule.__table__), rows)
    db.session.commit()


def count_commands(db) -> int:
    db.session.rollback()  # a fresh snapshot: other processes have been writing
    return db.session.scalar(select(func.count()).select_from(Command))


def flask(app, *args: str) -> subprocess.Popen:
    env = dict(
        os.environ,
        PORTAL_DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        PORTAL_SECRET_KEY="test-secret-key",
    )
    env.pop("FLASK_APP", None)
    return subprocess.Popen(
        [FLASK, "--app", "portal", "scheduler", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Signal the process and collect its exit code and stderr (killing it if it hangs)."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        _out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _out, err = process.communicate()
    return process.returncode, err


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


# ---- in-process -----------------------------------------------------------------------------


def test_tick_prints_how_many_commands_it_created(runner, db, device):
    for _ in range(3):
        factories.ScheduleFactory(device=device, next_fire_at=utcnow() - timedelta(seconds=5))
    result = runner.invoke(args=["scheduler", "tick"])
    assert (result.exit_code, result.stdout) == (0, "3\n")


def test_tick_with_nothing_due_prints_zero(runner, db, device):
    factories.ScheduleFactory(device=device, next_fire_at=utcnow() + timedelta(hours=1))
    result = runner.invoke(args=["scheduler", "tick"])
    assert (result.exit_code, result.stdout) == (0, "0\n")


def test_tick_records_the_pass(runner, db):
    runner.invoke(args=["scheduler", "tick"])
    assert db.session.scalar(select(func.count()).select_from(SchedulerPass)) == 1


def test_schedule_fired_by_tick_reaches_the_device(runner, client, db, device):
    factories.ScheduleFactory(
        device=device,
        action="relay.on",
        payload={"seconds": 5},
        next_fire_at=utcnow() - timedelta(seconds=1),
    )
    runner.invoke(args=["scheduler", "tick"])
    response = client.get("/api/v1/device/commands", headers=bearer(device.token))
    assert [(c["action"], c["payload"]) for c in response.get_json()["commands"]] == [
        ("relay.on", {"seconds": 5})
    ]


def test_demo_schedules_are_added_once_by_name(db, admin):
    for name in ("greenhouse-pi", "shed-esp32", "pond-pump", "weather-arduino"):
        factories.DeviceFactory(name=name, owner=admin)
    now = utcnow()
    added = [add_demo_schedules(now), add_demo_schedules(now)]
    names = db.session.execute(select(Schedule.name).order_by(Schedule.name)).scalars().all()
    assert (added, names) == (
        [5, 0],
        ["Fan pulse", "Firmware check", "Lights on at sunset", "Morning lights", "Pump weekdays"],
    )


def test_run_rejects_a_zero_interval(runner):
    result = runner.invoke(args=["scheduler", "run", "--interval", "0"])
    assert result.exit_code == 2


# ---- real processes -------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_fires_due_schedules_and_stops_cleanly_on_signal(app, db, device, sig):
    factories.ScheduleFactory(device=device, next_fire_at=utcnow() - timedelta(seconds=1))
    process = flask(app, "run", "--interval", "1")
    try:
        fired = wait_for(lambda: count_commands(db) == 1)
    finally:
        code, err = stop(process, sig)
    assert (fired, code) == (True, 0), err


def test_four_tick_processes_create_exactly_one_command_per_due_time(app, db, device):
    add_due_schedules(db, device, 2000, utcnow() - timedelta(seconds=30))
    processes = [flask(app, "tick") for _ in range(4)]
    outputs = [process.communicate(timeout=120) for process in processes]
    printed = sum(int(out.strip()) for out, _err in outputs)
    distinct = db.session.scalar(select(func.count(func.distinct(Command.schedule_id))))
    assert (printed, count_commands(db), distinct) == (2000, 2000, 2000), outputs


def test_four_run_processes_racing_on_one_due_time_fire_it_once(app, db, device):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("four scheduler processes at once is a PostgreSQL deployment")
    # Due a few seconds ahead, so all four processes are up and wake for the same instant.
    add_due_schedules(db, device, 2000, utcnow() + timedelta(seconds=6))
    processes = [flask(app, "run", "--interval", "0.5") for _ in range(4)]
    try:
        done = wait_for(lambda: count_commands(db) >= 2000, timeout=90)
        time.sleep(1.5)  # let any double fire land before counting
    finally:
        results = [stop(process) for process in processes]
    fired = db.session.scalar(select(func.sum(SchedulerPass.fired)))
    codes = [code for code, _err in results]
    assert (done, codes, count_commands(db), fired) == (True, [0] * 4, 2000, 2000), results
