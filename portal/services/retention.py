"""Retention: deleting readings, ended commands, audit entries and roll-ups older than their
settings, in short steps, and how much data there is.

Readings go by the installation's ``READINGS_RETENTION_DAYS`` or, for a device that has one, its
own ``readings_retention_days`` (0 = keep forever). Commands go only once they have ended
(succeeded, failed, expired, cancelled): a queued or delivered command is never deleted here.
The scheduler pass (``runner.tick``) and ``flask data purge`` both call ``purge``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, func, select, text

from portal.config import MAX_RETENTION_DAYS
from portal.extensions import db
from portal.models import (
    AuditEvent,
    Command,
    CommandStatus,
    DailyRollup,
    Device,
    HourlyRollup,
    Reading,
)
from portal.scheduling.timing import whole_number_between
from portal.services import partitions, rollups

# A step deletes at most this many rows to begin with; then it is sized so that a step takes
# about STEP_SECONDS, which is how long an upload may have to wait for the write lock.
FIRST_STEP_ROWS = 500
MIN_STEP_ROWS = 100
MAX_STEP_ROWS = 20_000
STEP_SECONDS = 0.02
# After each step the purge rests this share of the step's time (at least MIN_PAUSE_SECONDS):
# a waiting SQLite writer polls the lock every 2 ms at most, so it gets in before the next step.
PAUSE_SHARE = 0.5
MIN_PAUSE_SECONDS = 0.003
# Devices per statement when devices differ in retention: each is one index range.
DEVICE_CHUNK = 500
# On SQLite, the write-ahead log is checkpointed after every this many steps: consecutive steps
# change mostly the same index pages (one per device), so each is copied back once, not thrice.
CHECKPOINT_STEPS = 3
# A scheduler pass purges for at most this share of its interval, so passes keep their pace;
# what is left goes in the next pass.
PASS_SHARE = 0.5

ENDED = tuple(s.value for s in CommandStatus if not s.is_open)

_readings = Reading.__table__
_commands = Command.__table__
_audit = AuditEvent.__table__
_devices = Device.__table__


def check_days(value: Any) -> int | None:
    """A device's ``readings_retention_days``: None (the installation's default) or a whole
    number of days from 0 (keep forever) to MAX_RETENTION_DAYS. Raises ValueError."""
    if value is None:
        return None
    checked = whole_number_between(value, 0, MAX_RETENTION_DAYS)
    if checked is None:
        raise ValueError(
            f"A whole number of days from 0 (keep forever) to {MAX_RETENTION_DAYS};"
            " empty: the installation's default."
        )
    return checked


@dataclass(frozen=True)
class Policy:
    """How many days each kind of data is kept; 0 = forever."""

    readings_days: int
    commands_days: int
    audit_days: int
    rollups_days: int = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Policy:
        return cls(
            config["READINGS_RETENTION_DAYS"],
            config["COMMANDS_RETENTION_DAYS"],
            config["AUDIT_RETENTION_DAYS"],
            config["ROLLUP_RETENTION_DAYS"],
        )


@dataclass
class Purged:
    """What a purge deleted (or, dry, would delete). ``done`` is False when its time ran out
    with expired rows left: the next pass goes on with them."""

    readings: int = 0
    commands: int = 0
    audit: int = 0
    rollups: int = 0
    done: bool = True

    @property
    def total(self) -> int:
        return self.readings + self.commands + self.audit + self.rollups


@dataclass
class _Pacer:
    """Sizes steps to hold the write lock about STEP_SECONDS, rests between them, and stops
    at the deadline."""

    deadline: float
    rows: int = FIRST_STEP_ROWS
    fixed: bool = False

    def time_left(self) -> bool:
        return time.monotonic() < self.deadline

    def resize(self, locked_seconds: float) -> None:
        """After a full step: aim the next one at STEP_SECONDS (at most twice as many rows)."""
        if not self.fixed:
            wanted = int(self.rows * STEP_SECONDS / max(locked_seconds, 1e-4))
            self.rows = max(MIN_STEP_ROWS, min(MAX_STEP_ROWS, wanted, self.rows * 2))

    def rest_until(self, locked_seconds: float) -> float:
        return time.monotonic() + max(MIN_PAUSE_SECONDS, locked_seconds * PAUSE_SHARE)

    def rest(self, until: float) -> None:
        time.sleep(max(0.0, min(until, self.deadline) - time.monotonic()))


# ---- what is expired ------------------------------------------------------------------------


def _cutoff(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)


def _reading_groups(
    now: datetime, default_days: int, source: Any
) -> list[tuple[datetime, Sequence[int] | None]]:
    """(cutoff, device ids) for each retention in force; ids None means every device.

    One query for the devices that have their own retention (and, when there are any, one for
    the ids of the others): devices are grouped by retention, never queried one by one.
    """
    own = source.execute(
        select(_devices.c.id, _devices.c.readings_retention_days).where(
            _devices.c.readings_retention_days.is_not(None)
        )
    ).all()
    if not own:
        return [(_cutoff(now, default_days), None)] if default_days else []
    by_days: dict[int, list[int]] = defaultdict(list)
    for device_id, days in own:
        by_days[days].append(device_id)
    if default_days:
        by_days[default_days].extend(
            source.execute(
                select(_devices.c.id).where(_devices.c.readings_retention_days.is_(None))
            ).scalars()
        )
    return [(_cutoff(now, days), sorted(ids)) for days, ids in sorted(by_days.items()) if days]


def _reading_conditions(
    now: datetime, default_days: int, source: Any
) -> Iterator[tuple[list[ColumnElement[bool]], tuple[Any, ...]]]:
    """The WHERE clauses of expired readings, a few devices at a time, with the index order to
    take them in (the time index for all devices, the per-device index for some)."""
    for cutoff, ids in _reading_groups(now, default_days, source):
        if ids is None:
            yield [_readings.c.recorded_at < cutoff], (_readings.c.recorded_at, _readings.c.id)
            continue
        for start in range(0, len(ids), DEVICE_CHUNK):
            chunk = ids[start : start + DEVICE_CHUNK]
            yield [_readings.c.device_id.in_(chunk), _readings.c.recorded_at < cutoff], ()


def _expired(
    now: datetime, policy: Policy, source: Any
) -> Iterator[tuple[str, Any, list[Any], tuple[Any, ...]]]:
    """(kind, table, WHERE clauses, order) for every set of expired rows, small ones first;
    ``source`` (a session or connection) is asked which devices keep readings how long."""
    if policy.commands_days:
        cutoff = _cutoff(now, policy.commands_days)
        yield (
            "commands",
            _commands,
            [
                # created_at takes the index; an ended command ended after it was created.
                _commands.c.created_at < cutoff,
                _commands.c.status.in_(ENDED),
                _commands.c.finished_at < cutoff,
            ],
            (_commands.c.created_at,),
        )
    if policy.audit_days:
        cutoff = _cutoff(now, policy.audit_days)
        yield "audit", _audit, [_audit.c.created_at < cutoff], (_audit.c.created_at,)
    for where, order in _reading_conditions(now, policy.readings_days, source):
        yield "readings", _readings, where, order


# ---- purging --------------------------------------------------------------------------------


class _Stepper:
    """Runs the steps on a connection of its own, each step its own transaction.

    On SQLite the commit of a big delete would also checkpoint the write-ahead log, holding
    the write lock meanwhile (more than the delete itself): that is turned off while the
    purge runs, and it checkpoints between steps instead, while other writers go on.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.sqlite = connection.dialect.name == "sqlite"
        self.autocheckpoint = 0
        self.steps = 0
        if self.sqlite:
            previous = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
            self.autocheckpoint = int(previous or 0)
            connection.exec_driver_sql("PRAGMA wal_autocheckpoint=0")

    def step(
        self, table: Any, where: list[Any], order: tuple[Any, ...], rows: int
    ) -> tuple[int, int, float]:
        """Delete at most ``rows`` expired rows: (how many were chosen, how many went, seconds
        the write lock was held)."""
        chosen = select(table.c.id).where(*where).order_by(*order).limit(rows)
        if not self.sqlite:
            # Deleting takes no lock that an insert waits for: one statement.
            started = time.monotonic()
            # The group's conditions again: on partitioned readings they let PostgreSQL skip
            # the days that cannot hold the ids instead of looking each up in every day.
            result = self.connection.execute(
                delete(table).where(*where, table.c.id.in_(chosen.scalar_subquery()))
            )
            self.connection.commit()
            deleted = result.rowcount or 0
            return deleted, deleted, time.monotonic() - started
        # SQLite's one writer: the ids are read first, so the lock is held for the DELETE only.
        ids = self.connection.execute(chosen).scalars().all()
        self.connection.commit()
        if not ids:
            return 0, 0, 0.0
        started = time.monotonic()
        result = self.connection.execute(delete(table).where(table.c.id.in_(ids)))
        self.connection.commit()
        return len(ids), result.rowcount or 0, time.monotonic() - started

    def between_steps(self) -> None:
        self.steps += 1
        if self.sqlite and self.steps % CHECKPOINT_STEPS == 0:
            self.connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        if self.sqlite:
            if self.steps % CHECKPOINT_STEPS:
                self.connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            self.connection.exec_driver_sql(f"PRAGMA wal_autocheckpoint={int(self.autocheckpoint)}")


def purge(
    now: datetime,
    policy: Policy,
    *,
    budget_seconds: float,
    step_rows: int | None = None,
) -> Purged:
    """Delete what is older than ``policy`` allows at ``now``, in steps, for at most
    ``budget_seconds``; return what went.

    Each step is a transaction of its own on a connection of its own, committed at once (the
    session is not used). ``step_rows`` fixes the rows per step (else steps are sized to hold
    the write lock about STEP_SECONDS).
    """
    pacer = _Pacer(
        deadline=time.monotonic() + budget_seconds,
        rows=step_rows or FIRST_STEP_ROWS,
        fixed=step_rows is not None,
    )
    purged = Purged(readings=_drop_expired_weeks(now, policy))
    with db.engine.connect() as connection:
        stepper = _Stepper(connection)
        try:
            purged.done = _purge_steps(now, policy, stepper, pacer, purged)
        finally:
            stepper.close()
    if purged.done and policy.rollups_days:
        purged.done = _purge_rollups(now, policy.rollups_days, pacer, purged)
    return purged


def _drop_expired_weeks(now: datetime, policy: Policy) -> int:
    """On PostgreSQL, drop the readings' week partitions that every device's retention has
    passed (portal/services/partitions.py): a backlog of whole weeks in one statement each,
    where deleting a day of a fleet's readings row by row takes a minute. Returns how many
    readings went. What is left expired (the week that holds the cutoff, devices that keep
    less, the DEFAULT partition) goes in the steps."""
    if not partitions.is_partitioned():
        return 0
    days = _longest_retention(policy)
    if days is None:
        return 0
    return sum(partitions.drop_before(_cutoff(now, days)).values())


def _longest_retention(policy: Policy) -> int | None:
    """The most days any device keeps its readings; None when one keeps them forever."""
    days = func.coalesce(_devices.c.readings_retention_days, policy.readings_days)
    shortest, longest = db.session.execute(select(func.min(days), func.max(days))).one()
    if shortest is None:  # no devices, so no readings but the DEFAULT's strays
        shortest = longest = policy.readings_days
    return None if shortest == 0 else int(longest)


def _purge_steps(
    now: datetime, policy: Policy, stepper: _Stepper, pacer: _Pacer, purged: Purged
) -> bool:
    """Step through every set of expired rows; False when the time ran out first."""
    for kind, table, where, order in _expired(now, policy, stepper.connection):
        while True:
            if not pacer.time_left():
                return False
            rows = pacer.rows
            chosen, deleted, locked = stepper.step(table, where, order, rows)
            setattr(purged, kind, getattr(purged, kind) + deleted)
            if chosen < rows:
                break
            pacer.resize(locked)
            until = pacer.rest_until(locked)
            stepper.between_steps()
            pacer.rest(until)
    return True


def _purge_rollups(now: datetime, days: int, pacer: _Pacer, purged: Purged) -> bool:
    """The roll-ups past their retention, in the same steps (``rollups`` deletes them through
    the session); False when the time ran out first."""
    while pacer.time_left():
        rows = pacer.rows
        started = time.monotonic()
        try:
            deleted = rollups.purge_expired_rollups(now, rows, days)
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
        locked = time.monotonic() - started
        purged.rollups += deleted
        if deleted < rows:
            return True
        pacer.resize(locked)
        pacer.rest(pacer.rest_until(locked))
    return False


def count_expired(now: datetime, policy: Policy) -> Purged:
    """What ``purge`` would delete at ``now`` (a dry run): counts only, nothing changes."""
    counted = Purged()
    for kind, table, where, _order in _expired(now, policy, db.session):
        found = db.session.execute(select(func.count()).select_from(table).where(*where))
        setattr(counted, kind, getattr(counted, kind) + (found.scalar() or 0))
    if policy.rollups_days:
        cutoff = _cutoff(now, policy.rollups_days)
        for model in (HourlyRollup, DailyRollup):
            found = db.session.execute(
                select(func.count()).select_from(model).where(model.starts_at < cutoff)
            )
            counted.rollups += found.scalar() or 0
    return counted


# ---- how much there is ----------------------------------------------------------------------


@dataclass(frozen=True)
class TableSize:
    name: str
    rows: int
    oldest_at: datetime | None


# Each table the purge keeps small, with the instant its age is told by.
SIZED: tuple[tuple[str, Any], ...] = (
    ("readings", _readings.c.recorded_at),
    ("commands", _commands.c.created_at),
    ("audit_events", _audit.c.created_at),
    ("reading_rollups_hourly", HourlyRollup.__table__.c.starts_at),
    ("reading_rollups_daily", DailyRollup.__table__.c.starts_at),
)


def data_size() -> list[TableSize]:
    """Rows (an exact count) and the oldest instant of each table retention looks after."""
    sizes = []
    for name, instant in SIZED:
        rows = db.session.execute(select(func.count()).select_from(instant.table)).scalar()
        oldest = db.session.execute(select(func.min(instant))).scalar()
        sizes.append(TableSize(name, rows or 0, oldest))
    return sizes


@dataclass(frozen=True)
class DataSummary:
    """For the dashboard: about how many readings there are, the oldest one's day, and the
    retention in force (``own_retention``: how many devices have their own)."""

    readings: int
    oldest_day: date | None
    retention_days: int
    own_retention: int


def data_summary(policy: Policy) -> DataSummary:
    """Cheap at any size (index look-ups and catalogue reads): ``readings`` is an estimate,
    never a full COUNT (which costs tens of milliseconds per million rows on SQLite)."""
    oldest = db.session.execute(select(func.min(_readings.c.recorded_at))).scalar()
    own = db.session.execute(
        select(func.count()).where(_devices.c.readings_retention_days.is_not(None))
    ).scalar()
    estimate = None
    if db.session.get_bind().dialect.name == "postgresql":
        estimate = _planner_rows()
    return DataSummary(
        readings=_id_span() if estimate is None else estimate,
        oldest_day=oldest.date() if oldest is not None else None,
        retention_days=policy.readings_days,
        own_retention=own or 0,
    )


def _id_span() -> int:
    """The newest id less the oldest, plus one: exact while only the oldest readings were
    deleted (ids only grow), more than there are once readings in between went (a device
    deleted, or kept for less time than others). Two index look-ups."""
    newest = select(func.max(_readings.c.id)).scalar_subquery()
    oldest = select(func.min(_readings.c.id)).scalar_subquery()
    return int(db.session.execute(select(newest - oldest + 1)).scalar() or 0)


def _planner_rows() -> int | None:
    """PostgreSQL's row count kept by ANALYZE and autovacuum, over the table or its partitions
    (a partitioned parent holds no rows itself); None while it has never been analysed."""
    total, analysed = db.session.execute(
        text(
            "SELECT sum(c.reltuples) FILTER (WHERE c.reltuples >= 0),"
            " count(*) FILTER (WHERE c.reltuples >= 0) FROM pg_class c"
            " WHERE c.relkind = 'r' AND (c.oid = 'readings'::regclass OR c.oid IN"
            " (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'readings'::regclass))"
        )
    ).one()
    return int(total) if analysed else None
