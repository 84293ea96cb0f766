"""How the fleet is doing, as the dashboard shows it: scoped to what the user may see."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import selectinload
from sqlalchemy.sql.functions import FunctionElement

from portal.extensions import db
from portal.models import BridgeBeat, Command, CommandStatus, Device, Schedule, SchedulerPass, User
from portal.services import access

SCHEDULER_QUIET_SECONDS = 120
# A running bridge beats every 5 s: one silent for longer than this has stopped or hangs.
BRIDGE_QUIET_SECONDS = 30
# Bridges that stopped are still listed for a day (then only the newest beat is kept in view).
BRIDGE_SHOWN_SECONDS = 24 * 3600
BRIDGES_SHOWN = 10


DEVICE_STATUSES = ("online", "stale", "never")


class not_by_index(FunctionElement[Any]):  # used like a SQL function
    """A column that SQLite's planner must not choose an index for (SQLite's documented unary
    ``+``), so it takes the ``created_at`` range instead: for "the last 24 h of commands"
    it picked the status index and read all of them (100,000 commands: 70 ms -> 1 ms). Other
    databases get the column as it is."""

    inherit_cache = True

    def __init__(self, column: Any) -> None:
        super().__init__(column)
        self.type = column.type


@compiles(not_by_index)
def _as_is(element: not_by_index, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(not_by_index, "sqlite")
def _unary_plus(element: not_by_index, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.clauses, **kw))


def device_status(device: Device, now: datetime, online_seconds: int) -> str:
    """``online`` (heard from within the window), ``stale``, or ``never`` seen.

    The same rule as ``device_status_condition``, for one device already loaded.
    """
    if device.last_seen_at is None:
        return "never"
    if device.last_seen_at >= now - timedelta(seconds=online_seconds):
        return "online"
    return "stale"


def device_status_condition(status: str, now: datetime, online_seconds: int) -> ColumnElement[bool]:
    """The SQL condition "the device has this status" (one of DEVICE_STATUSES), for the
    dashboard's counts and the device list's filter alike.

    Raises ValueError for an unknown status.
    """
    seen = Device.last_seen_at
    online_after = now - timedelta(seconds=online_seconds)
    if status == "online":
        return seen >= online_after
    if status == "stale":
        return and_(seen.is_not(None), seen < online_after)
    if status == "never":
        return seen.is_(None)
    raise ValueError(f"unknown device status {status!r}")


def device_counts(user: User, now: datetime, online_seconds: int) -> dict[str, int]:
    """How many visible devices are online, stale and never seen, in one query."""
    counts = [
        func.coalesce(func.sum(case((device_status_condition(s, now, online_seconds), 1))), 0)
        for s in DEVICE_STATUSES
    ]
    row = db.session.execute(
        access.device_query_for(user).with_only_columns(func.count(), *counts).select_from(Device)
    ).one()
    return {"total": row[0], **dict(zip(DEVICE_STATUSES, row[1:], strict=True))}


def command_counts(user: User, now: datetime) -> dict[str, int]:
    """Commands created in the last 24 h, by status."""
    query = access.scope(
        select(Command.status, func.count()).where(Command.created_at >= now - timedelta(days=1)),
        user,
        Command.device_id,
    ).group_by(not_by_index(Command.status))
    counts = {status.value: 0 for status in CommandStatus}
    for status, count in db.session.execute(query):
        counts[status.value] = count
    return counts


def commands_needing_attention(user: User, now: datetime, limit: int = 10) -> list[Command]:
    """The latest failed or expired commands of the last 24 h, with their devices. Walked
    back from the newest through the day's commands only, however few of them failed."""
    query = (
        access.scope(
            select(Command).where(
                not_by_index(Command.status).in_([CommandStatus.failed, CommandStatus.expired]),
                Command.created_at >= now - timedelta(days=1),
            ),
            user,
            Command.device_id,
        )
        .options(selectinload(Command.device))
        .order_by(Command.created_at.desc(), Command.id.desc())
        .limit(limit)
    )
    return list(db.session.execute(query).scalars())


def schedules_due_soon(
    user: User, now: datetime, within: timedelta = timedelta(hours=1), limit: int = 10
) -> tuple[int, list[Schedule]]:
    """How many enabled schedules are due within ``within``, and the first few of them."""
    where = (Schedule.next_fire_at.is_not(None), Schedule.next_fire_at <= now + within)
    count = db.session.scalar(
        access.scope(
            select(func.count()).select_from(Schedule).where(*where), user, Schedule.device_id
        )
    )
    rows = db.session.execute(
        access.scope(
            select(Schedule).where(*where),
            user,
            Schedule.device_id,
        )
        .options(selectinload(Schedule.device))
        .order_by(Schedule.next_fire_at)
        .limit(limit)
    ).scalars()
    return count or 0, list(rows)


def scheduler_health(now: datetime) -> dict[str, Any]:
    """The last scheduler pass, its lag, and whether the scheduler seems to be down."""
    last = db.session.execute(
        select(SchedulerPass).order_by(SchedulerPass.started_at.desc()).limit(1)
    ).scalar_one_or_none()
    quiet = last is None or (now - last.finished_at).total_seconds() > SCHEDULER_QUIET_SECONDS
    return {"last": last, "quiet": quiet}


def device_connects_over(device: Device) -> str:
    """How the device has been heard from: ``http``, ``mqtt``, ``both`` or ``none`` (yet)."""
    http, mqtt = device.http_seen_at is not None, device.mqtt_seen_at is not None
    if http and mqtt:
        return "both"
    return "http" if http else "mqtt" if mqtt else "none"


def bridge_health(now: datetime) -> dict[str, Any]:
    """The MQTT bridges (``flask mqtt run``) as their heartbeats tell, and whether MQTT is
    configured (``MQTT_URL``) but no bridge runs (``quiet``) or none reaches the broker.

    ``bridges``: the beats of the last day, newest first, each with ``alive`` (beat within
    BRIDGE_QUIET_SECONDS); ``last``: the newest beat ever, if any.
    """
    configured = bool(current_app.config.get("MQTT_URL"))
    newest_first = select(BridgeBeat).order_by(BridgeBeat.beat_at.desc())
    rows = (
        db.session.execute(
            newest_first.where(
                BridgeBeat.beat_at >= now - timedelta(seconds=BRIDGE_SHOWN_SECONDS)
            ).limit(BRIDGES_SHOWN)
        )
        .scalars()
        .all()
    )
    quiet_after = timedelta(seconds=BRIDGE_QUIET_SECONDS)
    bridges = [{"beat": row, "alive": now - row.beat_at <= quiet_after} for row in rows]
    if bridges:
        last = bridges[0]["beat"]
    else:
        last = db.session.execute(newest_first.limit(1)).scalar_one_or_none()
    alive = [row for row, entry in zip(rows, bridges, strict=True) if entry["alive"]]
    return {
        "configured": configured,
        "bridges": bridges,
        "last": last,
        "quiet": configured and not alive,
        "disconnected": configured and bool(alive) and not any(row.connected for row in alive),
    }
