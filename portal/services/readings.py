"""Readings: storing a device's batch (one INSERT, all or nothing) and reading them back."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import Row, insert, or_, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from portal.extensions import db
from portal.models import Device, MetricUnit, Reading, utcnow
from portal.services import alerts, rollups
from portal.services.devices import DeviceRef
from portal.services.errors import InvalidInput

METRIC_RE = re.compile(r"^[a-z0-9_.-]{1,64}$")
# A metric's unit as a device may send it with a reading: 1 to 16 printable characters.
UNIT_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,16}$")
UNIT_HELP = "1 to 16 characters without control characters, e.g. °C or kPa."
METRIC_HELP = "1-64 characters: a-z, 0-9, _ . - (e.g. temperature)."
MAX_BATCH = 1000
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_TABLE = Reading.__table__
_COLUMNS = ("device_id", "metric", "value", "recorded_at")


class ReadingInput(NamedTuple):
    metric: Any
    value: Any
    ts: Any = None
    unit: Any = None  # optional: the metric's unit, kept per device for its chart


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too big for a float
        return False


def _utc_or_none(ts: datetime) -> datetime | None:
    try:
        return ts.astimezone(UTC)
    except (OverflowError, ValueError):  # a zone offset pushing year 1 or 9999 out of range
        return None


def _check_item(
    item: ReadingInput, now: datetime
) -> tuple[tuple[str, float, datetime] | None, dict[str, str]]:
    errors: dict[str, str] = {}
    metric, value, ts = item[0], item[1], item[2]
    if not isinstance(metric, str) or not METRIC_RE.match(metric):
        errors["metric"] = METRIC_HELP
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        errors["value"] = "A finite number."
    if ts is None:
        ts = now
    elif not isinstance(ts, datetime) or ts.tzinfo is None:
        errors["ts"] = "An RFC 3339 time with a zone, e.g. 2026-11-22T10:00:00Z."
    else:
        ts = _utc_or_none(ts)
        if ts is None or ts < EARLIEST:
            errors["ts"] = "A time from 1970 on."
    if errors:
        return None, errors
    return (metric, float(value), ts), {}


def validate_readings(
    items: Sequence[ReadingInput], now: datetime, field: str = "readings"
) -> list[tuple[str, float, datetime]]:
    """Check every item; return ``(metric, value, recorded_at)`` tuples in UTC.

    Raises InvalidInput naming each bad item's field as ``readings.<index>.<field>``.
    """
    if not 1 <= len(items) <= MAX_BATCH:
        raise InvalidInput(fields={field: f"From 1 to {MAX_BATCH} readings."})
    clean: list[tuple[str, float, datetime]] = []
    errors: dict[str, str] = {}
    for index, item in enumerate(items):
        metric, value, ts = item[0], item[1], item[2]
        unit = item[3] if len(item) > 3 else None
        if unit is not None and not (type(unit) is str and UNIT_RE.match(unit)):
            errors[f"{field}.{index}.unit"] = UNIT_HELP
        # The common case in a few C calls; anything unusual takes the slow path, which
        # names the problem.
        if (
            type(metric) is str
            and _metric_ok(metric)
            and type(value) is float
            and _isfinite(value)
            and (ts is None or (isinstance(ts, datetime) and ts.tzinfo is not None))
        ):
            at = now if ts is None else _utc_or_none(ts)
            if at is not None and at >= EARLIEST:
                clean.append((metric, value, at))
                continue
        row, item_errors = _check_item(ReadingInput(*item), now)
        if row is None:
            errors.update({f"{field}.{index}.{name}": msg for name, msg in item_errors.items()})
        else:
            clean.append(row)
    if errors:
        raise InvalidInput(fields=errors)
    return clean


_metric_ok = METRIC_RE.match
_isfinite = math.isfinite


def record_readings(
    device: Device | DeviceRef, items: Sequence[ReadingInput], now: datetime | None = None
) -> int:
    """Store a device's batch in one multi-row INSERT and return how many were stored.

    All or nothing: any bad item raises InvalidInput (naming it) and nothing is written.
    A reading without ``ts`` is stamped with ``now`` (UTC). The batch's roll-ups are updated,
    and the threshold rules on the device's metrics judge it, in the same transaction.
    """
    now = (now or utcnow()).astimezone(UTC)
    clean = validate_readings(items, now)
    _insert(device.id, clean)
    remember_units({(device.id, metric): unit for metric, unit in units_of(items).items()})
    rollups.add_readings([(device.id, metric, value, at) for metric, value, at in clean])
    alerts.judge_device_readings(device.id, clean, now)
    return len(clean)


def units_of(items: Sequence[ReadingInput]) -> dict[str, str]:
    """The units a checked batch sent, by metric (the last one sent wins)."""
    return {item[0]: item[3] for item in items if len(item) > 3 and item[3] is not None}


def remember_units(units: dict[tuple[int, str], str]) -> None:
    """Keep each (device, metric)'s newest unit. One read for the usual case, in which a device
    sends the units it sent before; only a new or changed unit is written."""
    if not units:
        return
    table = MetricUnit.__table__
    device_ids = {device_id for device_id, _ in units}
    known = {
        (row.device_id, row.metric): row.unit
        for row in db.session.execute(
            select(table.c.device_id, table.c.metric, table.c.unit).where(
                table.c.device_id.in_(device_ids)
            )
        )
    }
    changed = [
        {"device_id": device_id, "metric": metric, "unit": unit}
        for (device_id, metric), unit in sorted(units.items())
        if known.get((device_id, metric)) != unit
    ]
    if not changed:
        return
    dialect = db.session.get_bind().dialect.name
    upsert = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(table)
    db.session.execute(
        upsert.on_conflict_do_update(
            index_elements=[table.c.device_id, table.c.metric],
            set_={"unit": upsert.excluded.unit},
        ),
        changed,
    )


def _insert(device_id: int, rows: list[tuple[str, float, datetime]]) -> None:
    connection = db.session.connection()
    dialect = connection.dialect.name
    if dialect == "postgresql":
        # Three arrays instead of 400 placeholders: a short statement the driver parses once
        # and caches, and the server unpacks.
        metrics, values, times = zip(*rows, strict=False)
        connection.exec_driver_sql(
            _PG_INSERT, (device_id, list(metrics), list(values), list(times))
        )
    elif dialect == "sqlite":
        params: list[Any] = []
        for metric, value, recorded_at in rows:
            params += (device_id, metric, value, sqlite_time(recorded_at))
        # One statement for the whole batch: a hand-built multi-row VALUES list is far cheaper
        # than compiling an insert().values([...]) construct on every upload.
        connection.exec_driver_sql(_sqlite_insert(len(rows)), tuple(params))
    else:
        connection.execute(
            insert(_TABLE), [dict(zip(_COLUMNS, (device_id, *row), strict=False)) for row in rows]
        )


def insert_rows(rows: list[tuple[int, str, float, datetime]]) -> None:
    """Store checked readings of any number of devices, ``(device_id, metric, value,
    recorded_at)`` each, in as few statements as the database allows (the MQTT bridge stores a
    whole set of messages so), and fold them into their roll-ups."""
    if not rows:
        return
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        ids, metrics, values, times = zip(*rows, strict=True)
        connection.exec_driver_sql(
            _PG_INSERT_MANY, (list(ids), list(metrics), list(values), list(times))
        )
    elif connection.dialect.name == "sqlite":
        for start in range(0, len(rows), _SQLITE_ROWS):
            chunk = rows[start : start + _SQLITE_ROWS]
            params: list[Any] = []
            for device_id, metric, value, recorded_at in chunk:
                params += (device_id, metric, value, sqlite_time(recorded_at))
            connection.exec_driver_sql(_sqlite_insert(len(chunk)), tuple(params))
    else:
        connection.execute(insert(_TABLE), [dict(zip(_COLUMNS, row, strict=True)) for row in rows])
    rollups.add_readings(rows)


# SQLite takes at most 32,766 parameters in a statement: 4 per reading.
_SQLITE_ROWS = 8000
_PG_INSERT_MANY = (
    f"INSERT INTO {_TABLE.name} ({', '.join(_COLUMNS)}) "
    "SELECT * FROM unnest(%s::int[], %s::text[], %s::float8[], %s::timestamptz[])"
)
_PG_INSERT = (
    f"INSERT INTO {_TABLE.name} ({', '.join(_COLUMNS)}) "
    "SELECT %s, * FROM unnest(%s::text[], %s::float8[], %s::timestamptz[])"
)


def sqlite_time(at: datetime) -> str:
    """A UTC instant as the text SQLAlchemy's SQLite DATETIME stores (the same string, so
    stored times compare and sort alike), made in C rather than through the type's processor."""
    return at.replace(tzinfo=None).isoformat(" ", "microseconds")


@lru_cache(maxsize=8)
def _sqlite_insert(count: int) -> str:
    row = "(" + ", ".join(["?"] * len(_COLUMNS)) + ")"
    return f"INSERT INTO {_TABLE.name} ({', '.join(_COLUMNS)}) VALUES " + ", ".join([row] * count)


def list_readings(
    device: Device,
    *,
    metric: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    before: tuple[datetime, int] | None = None,
) -> list[Row[int, str, float, datetime]]:
    """A device's readings, newest first: rows of ``(id, metric, value, recorded_at)``.

    ``since`` is inclusive, ``until`` exclusive; ``before`` is the keyset position
    ``(recorded_at, id)`` of the last row already shown, so a deep page costs what page 1 does.
    """
    query = select(Reading.id, Reading.metric, Reading.value, Reading.recorded_at).where(
        Reading.device_id == device.id
    )
    if metric is not None:
        query = query.where(Reading.metric == metric)
    if since is not None:
        query = query.where(Reading.recorded_at >= since)
    if until is not None:
        query = query.where(Reading.recorded_at < until)
    if before is not None:
        at, last_id = before
        # The redundant "<=" gives the index a range to seek to; the OR breaks ties by id.
        query = query.where(
            Reading.recorded_at <= at, or_(Reading.recorded_at < at, Reading.id < last_id)
        )
    query = query.order_by(Reading.recorded_at.desc(), Reading.id.desc()).limit(limit)
    return list(db.session.execute(query))
