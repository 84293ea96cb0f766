"""Scheduler passes with frozen instants: firing, misfires, expiry, the claim and its guards."""

from __future__ import annotations

import threading
from collections import namedtuple
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from portal.models import Command, CommandSource, CommandStatus, Schedule, SchedulerPass
from portal.scheduling import runner
from portal.services import schedules as service
from tests import factories

UTC = UTC
S = timedelta(seconds=1)
T0 = datetime(2026, 5, 4, 6, 0, tzinfo=UTC)
DUE = T0 + timedelta(hours=1)  # 07:00 UTC


def schedule(db, device, **fields):
    values = {
        "name": "Lights",
        "device": device,
        "action": "relay.on",
        "cron": "0 7 * * *",
        "now": T0,
    }
    values.update(fields)
    created = service.create_schedule(None, **values)
    db.session.commit()
    return created


def commands(db):
    return db.session.execute(select(Command).order_by(Command.id)).scalars().all()


def reload(db, obj):
    db.session.expire_all()
    return db.session.get(type(obj), obj.id)


# ---- firing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "now, created",
    [(DUE - S, 0), (DUE, 1), (DUE + S, 1)],
    ids=["one-second-before", "at", "one-second-after"],
)
def test_pass_fires_a_schedule_once_it_is_due(db, device, now, created):
    schedule(db, device)
    assert runner.tick(now) == created


def test_due_schedule_becomes_one_command_for_its_due_time(db, device):
    s = schedule(db, device, payload={"seconds": 3}, command_ttl_seconds=600)
    runner.tick(DUE + 2 * S)
    [command] = commands(db)
    assert (
        command.source,
        command.schedule_id,
        command.device_id,
        command.action,
        command.payload,
        command.status,
        command.due_at,
        command.expires_at,
    ) == (
        CommandSource.schedule,
        s.id,
        device.id,
        "relay.on",
        {"seconds": 3},
        CommandStatus.queued,
        DUE,
        DUE + timedelta(seconds=600),
    )


def test_command_of_a_fractional_due_time_expires_exactly_ttl_later(db, device):
    run_at = DUE + timedelta(microseconds=123_456)
    schedule(db, device, cron=None, run_at=run_at, command_ttl_seconds=90)
    runner.tick(DUE + S)
    [command] = commands(db)
    assert (command.due_at, command.expires_at) == (run_at, run_at + timedelta(seconds=90))


def test_pass_advances_the_schedule_past_now(db, device):
    s = schedule(db, device)
    runner.tick(DUE + 2 * S)
    s = reload(db, s)
    assert (s.next_fire_at, s.last_fire_at, s.fire_count) == (DUE + timedelta(days=1), DUE, 1)


def test_second_pass_at_the_same_instant_creates_nothing(db, device):
    schedule(db, device)
    runner.tick(DUE)
    assert (runner.tick(DUE), len(commands(db))) == (0, 1)


def test_pass_leaves_schedules_not_yet_due(db, device):
    s = schedule(db, device, cron="0 8 * * *")
    runner.tick(DUE)
    assert (commands(db), reload(db, s).next_fire_at) == ([], DUE + timedelta(hours=1))


def test_disabled_schedule_does_not_fire(db, device):
    factories.ScheduleFactory(device=device, enabled=False, next_fire_at=DUE)
    assert runner.tick(DUE) == 0


def test_one_off_fires_once_and_finishes(db, device):
    s = schedule(db, device, cron=None, run_at=DUE)
    fired = [runner.tick(DUE), runner.tick(DUE + timedelta(days=1))]
    assert (fired, reload(db, s).next_fire_at) == ([1, 0], None)


def test_spring_gap_fires_once_at_the_first_instant_after_the_jump(db, device):
    schedule(
        db,
        device,
        cron="30 2 * * *",
        timezone="Europe/Berlin",
        now=datetime(2026, 3, 28, 12, tzinfo=UTC),
    )
    jump = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
    fired = [runner.tick(jump - S), runner.tick(jump)]
    assert (fired, [c.due_at for c in commands(db)]) == ([0, 1], [jump])


def test_autumn_repeat_fires_only_the_first_time(db, device):
    s = schedule(
        db,
        device,
        cron="30 2 * * *",
        timezone="Europe/Berlin",
        now=datetime(2026, 10, 24, 12, tzinfo=UTC),
    )
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET, the repeat
    fired = [runner.tick(first), runner.tick(second)]
    assert (fired, reload(db, s).next_fire_at) == (
        [1, 0],
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
    )


# ---- misfires -------------------------------------------------------------------------------


def test_missed_due_times_fire_only_the_latest_within_grace(db, device):
    s = schedule(db, device, cron=None, interval_seconds=60, start_at=DUE)
    runner.tick(DUE + timedelta(minutes=3, seconds=30))
    s = reload(db, s)
    assert ([c.due_at for c in commands(db)], s.skipped_count, s.next_fire_at) == (
        [DUE + timedelta(minutes=3)],
        3,
        DUE + timedelta(minutes=4),
    )


@pytest.mark.parametrize(
    "late, created", [(300, 1), (301, 0)], ids=["at-the-grace-edge", "one-second-past-grace"]
)
def test_late_due_time_fires_only_within_grace(db, device, late, created):
    schedule(db, device, misfire_grace_seconds=300)
    assert runner.tick(DUE + late * S) == created


def test_one_off_missed_beyond_grace_is_skipped_not_fired(db, device):
    s = schedule(db, device, cron=None, run_at=DUE, misfire_grace_seconds=60)
    runner.tick(DUE + timedelta(minutes=5))
    s = reload(db, s)
    assert (commands(db), s.skipped_count, s.fire_count, s.next_fire_at) == ([], 1, 0, None)


def test_re_enabled_schedule_does_not_catch_up(db, device):
    s = schedule(db, device, cron=None, interval_seconds=600, start_at=DUE)
    service.set_schedule_enabled(None, s, False, now=DUE - S)
    service.set_schedule_enabled(None, s, True, now=DUE + timedelta(hours=2, seconds=1))
    db.session.commit()
    fired = runner.tick(DUE + timedelta(hours=2, minutes=5))
    assert (fired, reload(db, s).skipped_count) == (0, 0)


# ---- expiry and the pass record -------------------------------------------------------------


@pytest.mark.parametrize(
    "status, expires_in, after",
    [
        (CommandStatus.queued, -1, CommandStatus.expired),
        (CommandStatus.delivered, 0, CommandStatus.expired),
        (CommandStatus.queued, 1, CommandStatus.queued),
        (CommandStatus.succeeded, -60, CommandStatus.succeeded),
    ],
    ids=["queued-past", "delivered-at-expiry", "queued-not-yet", "finished-untouched"],
)
def test_pass_expires_stale_open_commands(db, device, status, expires_in, after):
    command = factories.CommandFactory(
        device=device, status=status, expires_at=DUE + expires_in * S
    )
    runner.tick(DUE)
    assert reload(db, command).status is after


def test_pass_is_recorded(db, device):
    schedule(db, device)
    factories.CommandFactory(device=device, expires_at=DUE - S)
    runner.tick(DUE + 4 * S)
    row = db.session.execute(select(SchedulerPass)).scalar_one()
    assert (row.started_at, row.fired, row.skipped, row.expired, row.lag_seconds) == (
        DUE + 4 * S,
        1,
        0,
        1,
        4.0,
    )


# ---- the claim and its guards ---------------------------------------------------------------


def test_unique_due_time_guard_keeps_one_command_and_moves_on(db, device):
    taken = schedule(db, device, name="already fired")
    other = schedule(db, device, name="other")
    factories.CommandFactory(device=device, schedule_id=taken.id, due_at=DUE)
    fired = runner.tick(DUE)
    counts = db.session.execute(
        select(Command.schedule_id, func.count())
        .group_by(Command.schedule_id)
        .order_by(Command.schedule_id)
    ).all()
    assert (fired, counts, reload(db, taken).next_fire_at) == (
        1,
        [(taken.id, 1), (other.id, 1)],
        DUE + timedelta(days=1),
    )


def test_schedule_claimed_by_another_process_is_not_fired(db, device, monkeypatch):
    lost = schedule(db, device, name="lost")
    won = schedule(db, device, name="won")
    real = runner._due_batch

    def stale(now, last_id):
        # What this process read before another one advanced "lost": an older due time.
        rows = []
        for row in real(now, last_id):
            values = dict(row._mapping)
            if values["id"] == lost.id:
                values["next_fire_at"] = DUE - timedelta(days=1)
            rows.append(namedtuple("Row", values)(**values))  # like a Row: by name and place
        return rows

    monkeypatch.setattr(runner, "_due_batch", stale)
    runner.tick(DUE)
    assert [c.schedule_id for c in commands(db)] == [won.id]


def test_broken_schedule_is_logged_and_the_others_fire(db, device, caplog):
    broken = factories.ScheduleFactory(
        device=device, kind="cron", cron="not a cron", interval_seconds=None, next_fire_at=DUE
    )
    fine = schedule(db, device)
    fired = runner.tick(DUE)
    assert (fired, [c.schedule_id for c in commands(db)]) == (1, [fine.id])
    assert f"schedule {broken.id}" in caplog.text


def test_ten_thousand_due_schedules_fire_in_one_pass(db, device):
    # How fast is the bench's business (make bench: the tick scenario), not a timed test's.
    rows = [
        {
            "name": f"s{i}",
            "device_id": device.id,
            "action": "relay.on",
            "payload": {},
            "kind": "interval" if i % 2 else "cron",
            "cron": None if i % 2 else "*/5 * * * *",
            "interval_seconds": 300 if i % 2 else None,
            "timezone": "UTC",
            "enabled": True,
            "misfire_grace_seconds": 300,
            "command_ttl_seconds": 3600,
            "next_fire_at": DUE,
            "created_at": T0,
            "updated_at": T0,
            "fire_count": 0,
            "skipped_count": 0,
        }
        for i in range(10_000)
    ]
    db.session.execute(insert(Schedule.__table__), rows)
    db.session.commit()
    assert runner.tick(DUE) == 10_000
    assert len(commands(db)) == 10_000


# ---- run() ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "next_due, expected",
    [
        (None, 10.0),
        (DUE + 3 * S, 3.0),
        (DUE + timedelta(hours=1), 10.0),
        (DUE - S, 1.0),
    ],
    ids=["nothing-due", "due-soon", "due-later", "already-due"],
)
def test_run_sleeps_until_the_next_due_time_bounded_by_interval(next_due, expected):
    assert runner.seconds_to_sleep(DUE, next_due, 10.0) == expected


def test_run_retries_a_lost_database_with_back_off(app, monkeypatch):
    from sqlalchemy.exc import OperationalError

    stop = threading.Event()
    waits: list[float] = []
    calls = {"n": 0}

    def flaky(now=None):
        calls["n"] += 1
        if calls["n"] <= 3:
            raise OperationalError("SELECT 1", {}, Exception("connection lost"))
        stop.set()
        return 0

    monkeypatch.setattr(runner, "tick", flaky)
    monkeypatch.setattr(stop, "wait", lambda seconds: waits.append(seconds))
    runner.run(5.0, stop=stop)
    assert (calls["n"], waits[:3]) == (4, [1.0, 2.0, 4.0])
