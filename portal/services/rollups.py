"""Roll-ups: hourly and daily count, sum, minimum, maximum and last value per device and metric.

Ingest folds each stored batch into its slots in Python and sends one upsert per grain, in the
transaction of the readings INSERT, so a roll-up always agrees with the readings it summarises
(late and out-of-order ones too: "last" goes by the reading's time, a tie by the larger value).
Charts of long ranges and ``GET /devices/<id>/readings/summary`` read them; retention deletes
them after ``PORTAL_ROLLUP_RETENTION_DAYS``, later than raw readings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from flask import current_app
from sqlalchemy import Connection, CursorResult, delete, func, select, text, tuple_

from portal.extensions import db
from portal.models import DailyRollup, HourlyRollup
from portal.services.errors import InvalidInput

GRAINS: dict[str, type[HourlyRollup] | type[DailyRollup]] = {
    "hour": HourlyRollup,
    "day": DailyRollup,
}
GRAIN_SECONDS = {"hour": 3600, "day": 86400}
_COLUMNS = (
    "device_id",
    "starts_at",
    "metric",
    "count",
    "total",
    "minimum",
    "maximum",
    "last_value",
    "last_at",
)

# A slot being summed up: [count, total, minimum, maximum, last_value, last_at].
Slot = list[Any]
SlotKey = tuple[int, datetime, str]  # (device_id, starts_at, metric): the primary key's order


def add_readings(rows: Iterable[tuple[int, str, float, datetime]]) -> None:
    """Fold readings just inserted, ``(device_id, metric, value, recorded_at)`` in UTC, into
    their hourly and daily roll-ups: one upsert per grain, in the caller's transaction.

    Pass exactly the rows the INSERT stored (a replayed batch stored none). "Last" is the
    value of the latest reading, the larger one of readings with the same time.
    """
    hourly = _fold(rows)
    if not hourly:
        return
    # Sorted by primary key, so concurrent batches lock the rows they share in one order and
    # never deadlock.
    hours, days = _keyed(hourly), _keyed(_days(hourly))
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        # Both upserts in one statement: a round trip is most of what an upsert of a few rows
        # costs.
        connection.exec_driver_sql(_PG_UPSERTS, (*_arrays(hours), *_arrays(days)))
        return
    _sqlite_upserts(connection, HourlyRollup.__tablename__, hours)
    _sqlite_upserts(connection, DailyRollup.__tablename__, days)


# While folding, a slot is keyed by (device_id, metric, year, month, day[, hour]) of its UTC
# time: reading four attributes costs a fifth of ``datetime.replace`` on an aware instant.
_Fields = tuple[Any, ...]


def _fold(rows: Iterable[tuple[int, str, float, datetime]]) -> dict[_Fields, Slot]:
    slots: dict[_Fields, Slot] = {}
    for device_id, metric, value, at in rows:
        key = (device_id, metric, at.year, at.month, at.day, at.hour)
        found = slots.get(key)
        if found is None:
            slots[key] = [1, value, value, value, value, at]
            continue
        found[0] += 1
        found[1] += value
        if value < found[2]:
            found[2] = value
        elif value > found[3]:
            found[3] = value
        if at > found[5] or (at == found[5] and value > found[4]):
            found[4] = value
            found[5] = at
    return slots


def _days(hourly: dict[_Fields, Slot]) -> dict[_Fields, Slot]:
    """The daily slots from the hourly ones. An hour's last reading is in that hour, so the
    day's last is its latest hour's."""
    days: dict[_Fields, Slot] = {}
    for hour_key, (count, total, low, high, last, last_at) in hourly.items():
        key = hour_key[:5]
        found = days.get(key)
        if found is None:
            days[key] = [count, total, low, high, last, last_at]
            continue
        found[0] += count
        found[1] += total
        found[2] = min(found[2], low)
        found[3] = max(found[3], high)
        if last_at > found[5]:
            found[4] = last
            found[5] = last_at
    return days


def _keyed(slots: dict[_Fields, Slot]) -> list[tuple[SlotKey, Slot]]:
    """The slots under their primary key, ``(device_id, starts_at, metric)``, in its order."""
    return sorted(((key[0], _starts_at(key), key[1]), slot) for key, slot in slots.items())


def _starts_at(key: _Fields) -> datetime:
    hour = key[5] if len(key) > 5 else 0
    return datetime(key[2], key[3], key[4], hour, tzinfo=UTC)


def _arrays(rows: list[tuple[SlotKey, Slot]]) -> tuple[list[Any], ...]:
    """The slots column by column, as PostgreSQL's ``unnest`` takes them."""
    return tuple(
        list(column) for column in zip(*((*key, *slot) for key, slot in rows), strict=True)
    )


def _sqlite_upserts(connection: Connection, table: str, rows: list[tuple[SlotKey, Slot]]) -> None:
    for start in range(0, len(rows), _SQLITE_ROWS):
        chunk = rows[start : start + _SQLITE_ROWS]
        params: list[Any] = []
        for (device_id, starts_at, metric), (count, total, low, high, last, last_at) in chunk:
            params += (
                device_id,
                _sqlite_time(starts_at),
                metric,
                count,
                total,
                low,
                high,
                last,
                _sqlite_time(last_at),
            )
        connection.exec_driver_sql(_sqlite_upsert(table, len(chunk)), tuple(params))


# SQLite takes at most 32,766 parameters in a statement: 9 per slot.
_SQLITE_ROWS = 3600
# Every right-hand side reads the row as it was (SQL's UPDATE), so last_value compares the new
# last_at with the old one. Of readings with the same time the larger value is "last": the
# merge then gives the same row whatever order concurrent batches commit in.
_MERGE = (
    "count = r.count + excluded.count, total = r.total + excluded.total, "
    "minimum = {least}(r.minimum, excluded.minimum), "
    "maximum = {greatest}(r.maximum, excluded.maximum), "
    "last_value = CASE WHEN excluded.last_at > r.last_at THEN excluded.last_value "
    "WHEN excluded.last_at = r.last_at THEN {greatest}(r.last_value, excluded.last_value) "
    "ELSE r.last_value END, "
    "last_at = {greatest}(r.last_at, excluded.last_at)"
)
_CONFLICT = " ON CONFLICT (device_id, starts_at, metric) DO UPDATE SET "


def _pg_upsert(table: str) -> str:
    # Nine arrays instead of nine placeholders per slot: a short statement, parsed once.
    types = ("int", "timestamptz", "text", "int", "float8", "float8", "float8", "float8")
    arrays = ", ".join(f"%s::{t}[]" for t in (*types, "timestamptz"))
    return (
        f"INSERT INTO {table} AS r ({', '.join(_COLUMNS)}) SELECT * FROM unnest({arrays})"
        + _CONFLICT
        + _MERGE.format(least="least", greatest="greatest")
    )


# The hourly upsert as a data-modifying WITH: it runs to completion whether or not anything
# reads it, and every batch runs the same statement, so all lock their rows in one order.
_PG_UPSERTS = f"WITH hourly AS ({_pg_upsert(HourlyRollup.__tablename__)}) " + _pg_upsert(
    DailyRollup.__tablename__
)


@lru_cache(maxsize=16)
def _sqlite_upsert(table: str, count: int) -> str:
    row = "(" + ", ".join("?" * len(_COLUMNS)) + ")"
    return (
        f"INSERT INTO {table} AS r ({', '.join(_COLUMNS)}) VALUES "
        + ", ".join([row] * count)
        + _CONFLICT
        # SQLite's two-argument min() and max() are the scalar least and greatest.
        + _MERGE.format(least="min", greatest="max")
    )


def _sqlite_time(at: datetime) -> str:
    """The text SQLAlchemy's SQLite DATETIME stores, so stored times compare alike."""
    return at.replace(tzinfo=None).isoformat(" ", "microseconds")


# ---- reading them ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    """One slot of time of one metric."""

    starts_at: datetime
    count: int
    total: float
    minimum: float
    maximum: float
    last_value: float
    last_at: datetime

    @property
    def mean(self) -> float:
        return self.total / self.count


# The window a summary covers when the caller names no ``since``.
DEFAULT_WINDOWS = {"hour": timedelta(hours=24), "day": timedelta(days=30)}


def summary_window(
    step: str, since: datetime | None, until: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """``[since, until)`` with the defaults filled in: until now, since a day (hourly) or 30
    days (daily) before until. Raises InvalidInput when until is not after since."""
    if until is None:
        until = now
    if since is None:
        try:
            since = until - DEFAULT_WINDOWS[step]
        except OverflowError:  # until within a day of year 1
            since = datetime.min.replace(tzinfo=UTC)
    if until <= since:
        raise InvalidInput(fields={"until": "Must be later than since."})
    return since, until


def summarize(
    device_id: int,
    metric: str,
    step: str,
    since: datetime,
    until: datetime,
    *,
    limit: int,
    after: datetime | None = None,
) -> list[Bucket]:
    """A metric's ``step`` (``hour`` or ``day``) roll-ups that start in ``[since, until)``,
    oldest first, at most ``limit``; ``after`` is the start of the last bucket already shown."""
    model = GRAINS[step]
    query = select(
        model.starts_at,
        model.count,
        model.total,
        model.minimum,
        model.maximum,
        model.last_value,
        model.last_at,
    ).where(
        model.device_id == device_id,
        model.metric == metric,
        model.starts_at >= since,
        model.starts_at < until,
    )
    if after is not None:
        query = query.where(model.starts_at > after)
    rows = db.session.execute(query.order_by(model.starts_at).limit(limit))
    return [Bucket(*row) for row in rows]


def slots(
    device_id: int, step: str, since: datetime, until: datetime, bucket_seconds: int
) -> dict[str, list[tuple[int, int, float, float, float]]]:
    """Every metric's roll-ups in ``[since, until)`` merged into ``bucket_seconds`` slots (a
    multiple of the step, counted from the epoch): ``{metric: [(slot start as epoch seconds,
    count, total, minimum, maximum), …]}`` in time order. The mean of a slot is exact."""
    model = GRAINS[step]
    rows = db.session.execute(
        select(
            model.metric,
            model.starts_at,
            model.count,
            model.total,
            model.minimum,
            model.maximum,
        )
        .where(model.device_id == device_id, model.starts_at >= since, model.starts_at < until)
        .order_by(model.starts_at)
    )
    merged: dict[str, dict[int, list[Any]]] = {}
    for metric, starts_at, count, total, low, high in rows:
        start = int(starts_at.timestamp()) // bucket_seconds * bucket_seconds
        found = merged.setdefault(metric, {}).get(start)
        if found is None:
            merged[metric][start] = [start, count, total, low, high]
        else:
            found[1] += count
            found[2] += total
            found[3] = min(found[3], low)
            found[4] = max(found[4], high)
    return {
        metric: [(s[0], s[1], s[2], s[3], s[4]) for s in by_start.values()]
        for metric, by_start in sorted(merged.items())
    }


# ---- keeping them ----------------------------------------------------------------------------


def purge_expired_rollups(now: datetime, budget_rows: int, days: int | None = None) -> int:
    """Delete at most ``budget_rows`` roll-ups that started more than ``days`` (default
    ``PORTAL_ROLLUP_RETENTION_DAYS``; 0 keeps them forever) before ``now``; return how many.

    Hourly ones first, oldest first, in one statement per grain; nothing is committed, so the
    caller commits between calls and each step holds the write lock briefly. Fewer than
    ``budget_rows`` deleted means nothing expired is left.
    """
    if days is None:
        days = int(current_app.config["ROLLUP_RETENTION_DAYS"])
    if days <= 0 or budget_rows <= 0:
        return 0
    cutoff = now.astimezone(UTC) - timedelta(days=days)
    deleted = 0
    for model in (HourlyRollup, DailyRollup):
        if deleted >= budget_rows:
            break
        key = tuple_(model.device_id, model.starts_at, model.metric)
        oldest = (
            select(model.device_id, model.starts_at, model.metric)
            .where(model.starts_at < cutoff)
            .order_by(model.starts_at)
            .limit(budget_rows - deleted)
        )
        result = db.session.execute(
            delete(model).where(key.in_(oldest)).execution_options(synchronize_session=False)
        )
        deleted += cast(CursorResult[Any], result).rowcount
    return deleted


def rebuild_rollups() -> int:
    """Recompute every roll-up from the readings table (after a bulk load that bypassed
    ingest, such as the benchmark's seed); return how many hourly slots there are. Run it in
    a transaction of its own: it replaces both tables."""
    connection = db.session.connection()
    dialect = connection.dialect.name
    connection.execute(delete(DailyRollup))
    connection.execute(delete(HourlyRollup))
    connection.execute(text(_rebuild_sql("hour", dialect)))
    connection.execute(text(_rebuild_sql("day", dialect)))
    count = db.session.scalar(select(func.count()).select_from(HourlyRollup))
    return int(count or 0)


def _rebuild_sql(step: str, dialect: str) -> str:
    """``INSERT … SELECT`` of one grain: hours from the readings (the last value is the one
    with the latest time, then the larger value), days from the hours (the day's last is its
    latest hour's)."""
    columns = ", ".join(_COLUMNS)
    if step == "hour":
        start = _slot_start("recorded_at", "hour", dialect)
        return (
            f"INSERT INTO {HourlyRollup.__tablename__} ({columns}) "
            "SELECT device_id, slot, metric, count(*), sum(value), min(value), max(value), "
            "max(last), max(recorded_at) FROM (SELECT device_id, metric, value, recorded_at, "
            f"{start} AS slot, first_value(value) OVER (PARTITION BY device_id, metric, "
            f"{start} ORDER BY recorded_at DESC, value DESC) AS last FROM readings) AS r "
            "GROUP BY device_id, slot, metric"
        )
    start = _slot_start("starts_at", "day", dialect)
    return (
        f"INSERT INTO {DailyRollup.__tablename__} ({columns}) "
        "SELECT device_id, slot, metric, sum(count), sum(total), min(minimum), max(maximum), "
        "max(last), max(last_at) FROM (SELECT device_id, metric, count, total, minimum, "
        f"maximum, last_at, {start} AS slot, first_value(last_value) OVER (PARTITION BY "
        f"device_id, metric, {start} ORDER BY starts_at DESC) AS last "
        f"FROM {HourlyRollup.__tablename__}) AS r GROUP BY device_id, slot, metric"
    )


def _slot_start(column: str, step: str, dialect: str) -> str:
    if dialect == "postgresql":
        # date_bin counts whole hours or days from the epoch: UTC, whatever the session's zone.
        return f"date_bin('1 {step}', {column}, timestamptz '1970-01-01 00:00:00+00')"
    # SQLite keeps UTC as 'YYYY-MM-DD HH:MM:SS.ffffff' text: cut it to the hour or the day.
    if step == "hour":
        return f"substr({column}, 1, 13) || ':00:00.000000'"
    return f"substr({column}, 1, 10) || ' 00:00:00.000000'"
