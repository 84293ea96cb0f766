"""Scheduler passes: ``tick(now)`` fires what is due once; ``run(interval)`` repeats it.

Any number of processes may run passes against one database. Each due schedule is claimed with
a conditional UPDATE (``next_fire_at`` must still hold the value read, so exactly one process
wins it); on PostgreSQL the batch is also row-locked with SKIP LOCKED so processes share the
work instead of queueing on each other. The unique (schedule_id, due_at) constraint on commands
is the final guard.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import typing
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import FrameType
from typing import Any

from flask import current_app
from sqlalchemy import (
    ColumnElement,
    CursorResult,
    String,
    Update,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from portal.extensions import db
from portal.models import Command, CommandSource, CommandStatus, Schedule, SchedulerPass, utcnow
from portal.models.types import UTCDateTime
from portal.scheduling import timing
from portal.services import alerts, notifications, partitions, retention
from portal.services.commands import expire_commands
from portal.services.idempotency import purge_expired
from portal.services.schedules import spec_of
from portal.services.sessions import purge_sessions
from portal.services.wakeup import wake_bridge

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
PASS_HISTORY = timedelta(days=7)
MAX_BACKOFF_SECONDS = 60.0
# Errors that mean the database is unreachable or busy: the whole pass fails and run() retries.
DATABASE_DOWN = (OperationalError, InterfaceError)

_schedules = Schedule.__table__
_commands = Command.__table__

# Columns a pass needs to plan; the command's action and payload are copied inside the database.
_PLAN_COLUMNS = [
    _schedules.c[name]
    for name in (
        "id",
        "kind",
        "cron",
        "interval_seconds",
        "run_at",
        "sun_event",
        "sun_offset_minutes",
        "sun_latitude",
        "sun_longitude",
        "timezone",
        "start_at",
        "end_at",
        "created_at",
        "next_fire_at",
        "misfire_grace_seconds",
    )
]

# The claim: advance a schedule only if it still holds the due time this process read.
_CLAIM = (
    update(_schedules)
    .where(
        _schedules.c.id == bindparam("b_id"),
        _schedules.c.next_fire_at == bindparam("b_due"),
        _schedules.c.enabled.is_(True),
    )
    .values(
        next_fire_at=bindparam("b_next"),
        last_fire_at=func.coalesce(
            bindparam("b_fired_at", type_=UTCDateTime()), _schedules.c.last_fire_at
        ),
        fire_count=_schedules.c.fire_count + bindparam("b_fired"),
        skipped_count=_schedules.c.skipped_count + bindparam("b_skipped"),
        # Firing is not an edit: keep updated_at for people's changes.
        updated_at=_schedules.c.updated_at,
    )
)

# The usual case, with fewer parameters: fired on time, nothing skipped. (SET reads the old row,
# so last_fire_at takes the due time being replaced.)
_CLAIM_ON_TIME = (
    update(_schedules)
    .where(
        _schedules.c.id == bindparam("b_id"),
        _schedules.c.next_fire_at == bindparam("b_due"),
        _schedules.c.enabled.is_(True),
    )
    .values(
        next_fire_at=bindparam("b_next"),
        last_fire_at=_schedules.c.next_fire_at,
        fire_count=_schedules.c.fire_count + 1,
        updated_at=_schedules.c.updated_at,
    )
)


@dataclass
class _Due:
    row: Any
    plan: timing.FirePlan

    @property
    def on_time(self) -> bool:
        return self.plan.fire_at == self.row.next_fire_at and not self.plan.skipped

    def claim_params(self) -> dict[str, Any]:
        if self.on_time:
            return {
                "b_id": self.row.id,
                "b_due": self.row.next_fire_at,
                "b_next": self.plan.next_fire_at,
            }
        return {
            "b_id": self.row.id,
            "b_due": self.row.next_fire_at,
            "b_next": self.plan.next_fire_at,
            "b_fired_at": self.plan.fire_at,
            "b_fired": 1 if self.plan.fire_at else 0,
            "b_skipped": self.plan.skipped,
        }


def _claim_group(ids: list[int], due: datetime, plan: timing.FirePlan) -> Update:
    """The claim for schedules that share a due time and a plan, as one statement."""
    values: dict[str, Any] = {
        "next_fire_at": plan.next_fire_at,
        "skipped_count": _schedules.c.skipped_count + plan.skipped,
        "updated_at": _schedules.c.updated_at,
    }
    if plan.fire_at is not None:
        values.update(last_fire_at=plan.fire_at, fire_count=_schedules.c.fire_count + 1)
    return (
        update(_schedules)
        .where(
            _schedules.c.id.in_(ids),
            _schedules.c.next_fire_at == due,
            _schedules.c.enabled.is_(True),
        )
        .values(**values)
    )


def _claim(batch: list[_Due]) -> int:
    """Claim every schedule of the batch; returns how many this process won."""
    groups: dict[tuple[datetime, timing.FirePlan], list[_Due]] = defaultdict(list)
    for due in batch:
        groups[(due.row.next_fire_at, due.plan)].append(due)
    on_time: list[dict[str, Any]] = []
    late: list[dict[str, Any]] = []
    claimed = 0
    for (at, plan), members in groups.items():
        if len(members) == 1:
            (on_time if members[0].on_time else late).append(members[0].claim_params())
        else:
            ids = [due.row.id for due in members]
            claimed += _rows_changed(_claim_group(ids, at, plan))
    for statement, params in ((_CLAIM_ON_TIME, on_time), (_CLAIM, late)):
        if params:
            claimed += _rows_changed(statement, params)
    return claimed


def _rows_changed(
    statement: Update, params: dict[str, Any] | list[dict[str, Any]] | None = None
) -> int:
    """Run a claim (an UPDATE of schedules) and return how many rows it changed."""
    # Session.execute is typed to return a Result; for an UPDATE it is a CursorResult.
    result = db.session.execute(statement, params)
    return typing.cast(CursorResult[Any], result).rowcount


def _plus_seconds(
    instant: ColumnElement[datetime], seconds: ColumnElement[int], dialect: str
) -> ColumnElement[str] | ColumnElement[datetime]:
    if dialect == "sqlite":
        # SQLAlchemy keeps SQLite instants as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): add whole
        # seconds and put the same fraction back, so the text stays in that exact form.
        shifted = func.strftime(
            "%Y-%m-%d %H:%M:%S",
            instant,
            literal("+").concat(cast(seconds, String)).concat(" seconds"),
        )
        return shifted.concat(func.substr(instant, 20))
    return instant + func.make_interval(0, 0, 0, 0, 0, 0, seconds)


def _insert_commands(ids: list[int], now: datetime) -> None:
    """Queue one command per claimed schedule, for the due time the claim just recorded."""
    dialect = db.session.get_bind().dialect.name
    due = _schedules.c.last_fire_at
    rows = select(
        _schedules.c.device_id,
        _schedules.c.action,
        _schedules.c.payload,
        literal(CommandStatus.queued.value),
        literal(CommandSource.schedule.value),
        _schedules.c.id,
        due,
        literal(now, UTCDateTime()),
        _plus_seconds(due, _schedules.c.command_ttl_seconds, dialect),
        literal(0),
    ).where(_schedules.c.id.in_(ids))
    db.session.execute(
        insert(_commands).from_select(
            [
                "device_id",
                "action",
                "payload",
                "status",
                "source",
                "schedule_id",
                "due_at",
                "created_at",
                "expires_at",
                "attempts",
            ],
            rows,
        )
    )
    wake_bridge()


@dataclass
class _Tally:
    fired: int = 0
    skipped: int = 0
    lag_seconds: float = 0.0

    def add(self, due: _Due, now: datetime, fired: bool) -> None:
        self.fired += int(fired)
        self.skipped += due.plan.skipped
        self.lag_seconds = max(self.lag_seconds, (now - due.row.next_fire_at).total_seconds())


def tick(now: datetime | None = None) -> int:
    """Run one pass at ``now``: fire due schedules, expire stale commands, judge the rules
    that wait on time (``alerts.check_due``), record the pass,
    then send the notifications due (``notifications.deliver_due``), and last delete the
    data past its retention, in short steps for at most half an interval (``retention``).

    Returns how many commands were created. Commits its own work (the scheduler is an edge).
    Raises OperationalError/InterfaceError when the database is unreachable.
    """
    now = now or utcnow()
    started = time.monotonic()
    tally = _Tally()
    last_id = 0
    while rows := _due_batch(now, last_id):
        last_id = rows[-1].id
        _fire_batch(_plan(rows, now), now, tally)
    # The same rule a device's poll applies: past expires_at, or out of attempts.
    expired = expire_commands(now)
    # Durations and silence; a failed or expired command has raised its alerts already.
    alerts.check_due(now)
    purge_expired(now)
    # A session last seen (or ended) longer ago than a session may live opens nothing again.
    purge_sessions(now - timedelta(hours=current_app.config["SESSION_MAX_HOURS"]))
    finished = now + timedelta(seconds=time.monotonic() - started)
    pass_id = db.session.execute(
        insert(SchedulerPass.__table__)
        .values(
            started_at=now,
            finished_at=finished,
            fired=tally.fired,
            skipped=tally.skipped,
            expired=expired,
            lag_seconds=round(tally.lag_seconds, 3),
            host=_host(),
        )
        .returning(SchedulerPass.__table__.c.id)
    ).scalar_one()
    db.session.execute(
        delete(SchedulerPass.__table__).where(
            SchedulerPass.__table__.c.started_at < now - PASS_HISTORY
        )
    )
    db.session.commit()
    # Last, once the pass's own work is stored: each send is bounded in time and they go out
    # side by side, so a dead receiver costs this pass seconds at most and loses nothing.
    try:
        notifications.deliver_due(now)
    except DATABASE_DOWN:
        raise
    except Exception:  # the notifications' failure must not fail the pass; the next retries
        db.session.rollback()
        log.exception("delivering notifications failed")
    _make_partitions(now)
    _purge(now, pass_id, started)
    return tally.fired


def _make_partitions(now: datetime) -> None:
    """Make the readings' week partitions of the days ahead (PostgreSQL; a no-op elsewhere)."""
    try:
        made = partitions.ensure_partitions(now)  # each week commits on its own
    except DATABASE_DOWN:
        raise
    except Exception:  # housekeeping must not fail the pass; the DEFAULT partition takes
        db.session.rollback()  # the readings meanwhile, and the next pass tries again
        log.exception("making readings partitions failed")
        return
    if made:
        log.info("made readings partition(s) %s", ", ".join(made))


def _purge(now: datetime, pass_id: int, started: float) -> None:
    """Delete expired data (each step commits on its own), then note on the pass what went."""
    config = current_app.config
    try:
        purged = retention.purge(
            now,
            retention.Policy.from_config(config),
            budget_seconds=config["SCHEDULER_INTERVAL_SECONDS"] * retention.PASS_SHARE,
        )
    except DATABASE_DOWN:
        raise
    except Exception:  # housekeeping must not fail the pass; the next one tries again
        db.session.rollback()
        log.exception("purging expired data failed")
        return
    if not purged.total:
        return
    log.info(
        "purged %d reading(s), %d command(s), %d audit entries, %d roll-up(s)%s",
        purged.readings,
        purged.commands,
        purged.audit,
        purged.rollups,
        "" if purged.done else "; more next pass",
    )
    db.session.execute(
        update(SchedulerPass.__table__)
        .where(SchedulerPass.__table__.c.id == pass_id)
        .values(
            purged=purged.total,
            finished_at=now + timedelta(seconds=time.monotonic() - started),
        )
    )
    db.session.commit()


def _host() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


def _due_batch(now: datetime, last_id: int) -> Sequence[Any]:
    """The next batch of due schedules by id (each is visited at most once per pass)."""
    query = (
        select(*_PLAN_COLUMNS)
        .where(
            _schedules.c.enabled.is_(True),
            _schedules.c.next_fire_at <= now,
            _schedules.c.id > last_id,
        )
        .order_by(_schedules.c.id)
        .limit(BATCH_SIZE)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        # Rows another process is working on are skipped: it owns them for this pass.
        query = query.with_for_update(skip_locked=True)
    return db.session.execute(query).all()


def _plan(rows: Sequence[Any], now: datetime) -> list[_Due]:
    planned: list[_Due] = []
    # Schedules with the same timing columns (all but the id) have the same plan at ``now``:
    # a fleet's schedules are mostly copies of a few, and building a spec per row was a third
    # of a 10,000-schedule pass's Python time.
    plans: dict[tuple[Any, ...], timing.FirePlan] = {}
    for row in rows:
        key = tuple(row[1:])
        plan = plans.get(key)
        if plan is None:
            try:
                plan = timing.plan_fire(
                    spec_of(row), row.next_fire_at, now, row.misfire_grace_seconds
                )
            except Exception:  # one broken schedule must not stop the others
                log.exception("schedule %s: cannot compute its due times; left as it is", row.id)
                continue
            plans[key] = plan
        planned.append(_Due(row, plan))
    return planned


def _fire_batch(batch: list[_Due], now: datetime, tally: _Tally) -> None:
    """Claim and fire a batch in one transaction; on any contention, one schedule at a time."""
    if not batch:
        db.session.rollback()  # release the SKIP LOCKED row locks
        return
    try:
        claimed = _claim(batch)
        if claimed != len(batch):
            raise _Contended(f"claimed {claimed} of {len(batch)}")
        fired = [due.row.id for due in batch if due.plan.fire_at is not None]
        if fired:
            _insert_commands(fired, now)
        db.session.commit()
    except DATABASE_DOWN:
        db.session.rollback()
        raise
    except Exception as exc:  # contention, the unique guard, or one bad row: go one by one
        db.session.rollback()
        level = logging.INFO if isinstance(exc, (_Contended, IntegrityError)) else logging.ERROR
        log.log(level, "batch of %d fell back to one by one: %s", len(batch), exc)
        for due in batch:
            _fire_one(due, now, tally)
        return
    for due in batch:
        tally.add(due, now, fired=due.plan.fire_at is not None)


class _Contended(Exception):
    """Another process claimed part of the batch first."""


def _fire_one(due: _Due, now: datetime, tally: _Tally) -> None:
    try:
        if not _claim_one(due):
            return
        fired = False
        if due.plan.fire_at is not None:
            try:
                _insert_commands([due.row.id], now)
                fired = True
            except IntegrityError:
                # The final guard: this due time already has its command. Keep the claim.
                db.session.rollback()
                log.warning(
                    "schedule %s: due time %s already fired",
                    due.row.id,
                    due.plan.fire_at.isoformat(),
                )
                if not _claim_one(due):
                    return
        db.session.commit()
        tally.add(due, now, fired)
    except DATABASE_DOWN:
        db.session.rollback()
        raise
    except Exception:  # log it, move this schedule on, keep going
        db.session.rollback()
        log.exception("schedule %s: firing failed", due.row.id)


def _claim_one(due: _Due) -> bool:
    """Advance the schedule only if it still holds the due time read: True = this process won."""
    statement = _CLAIM_ON_TIME if due.on_time else _CLAIM
    if _rows_changed(statement, due.claim_params()) == 1:
        return True
    db.session.rollback()
    return False


def next_due_at() -> datetime | None:
    """The earliest stored due time of any enabled schedule."""
    return db.session.execute(
        select(func.min(_schedules.c.next_fire_at)).where(_schedules.c.enabled.is_(True))
    ).scalar()


def seconds_to_sleep(now: datetime, next_due: datetime | None, interval: float) -> float:
    """Sleep until the next due time, at most ``interval``.

    A due time already behind us (a schedule another process holds, or one that failed) waits
    up to a second rather than spinning.
    """
    if next_due is None:
        return interval
    if next_due <= now:
        return min(1.0, interval)
    return min(interval, (next_due - now).total_seconds())


def run(interval: float = 10.0, stop: threading.Event | None = None) -> None:
    """Run passes until SIGTERM/SIGINT (or ``stop`` is set); the current pass always finishes.

    A lost database connection is retried with exponential back-off up to a minute.
    """
    stop = stop or threading.Event()
    restore = on_signals(stop)
    backoff = 1.0
    try:
        while not stop.is_set():
            try:
                fired = tick(utcnow())
                if fired:
                    log.info("pass fired %d command(s)", fired)
                wait = seconds_to_sleep(utcnow(), next_due_at(), interval)
                db.session.commit()
                backoff = 1.0
            except DATABASE_DOWN as exc:
                reset_session()
                log.warning(
                    "database unavailable (%s); retrying in %.0f s", exc.__class__.__name__, backoff
                )
                wait, backoff = backoff, min(backoff * 2, MAX_BACKOFF_SECONDS)
            stop.wait(wait)
    finally:
        restore()
        db.session.remove()


def reset_session() -> None:
    # The connection may be gone already; the pool hands out a new one.
    with contextlib.suppress(Exception):
        db.session.rollback()
    db.session.remove()


def on_signals(stop: threading.Event) -> Callable[[], None]:
    """Make SIGTERM and SIGINT set ``stop``; return a function that restores the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: finishing the work in hand, then stopping", signum)
        stop.set()

    for sig in previous:
        signal.signal(sig, handle)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
