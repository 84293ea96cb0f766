"""Readings partitioned by UTC day on PostgreSQL: each day's partition made ahead of time by the
scheduler pass, and whole days dropped by retention instead of deleted row by row.

Why days: measured on 1,000,000 readings over 100 days (PostgreSQL 15), every list, keyset
and chart query stays within 1.3 ms with 100 daily partitions (0.1-0.3 ms unpartitioned,
0.1-0.7 ms weekly), an upload of 100 readings takes 4.6 ms (10.6 ms unpartitioned: today's
indexes are small), and retention is exact to the day instead of the week. Why not
pg_partman: it must be installed on the database server and created as an extension by a
superuser; these few statements need neither.

A reading outside every day's partition (a device whose clock is years off, or a day not made
yet) goes to the DEFAULT partition, so an upload never fails for its timestamp; making a day
moves that day's rows out of it first. SQLite keeps one table and none of this applies.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import text

from portal.extensions import db

PARENT = "readings"
DEFAULT = "readings_default"
# Days made ahead of today, so a partition exists before its first reading arrives even when
# the scheduler is down for a few days.
DAYS_AHEAD = 7
# Days made behind today too: late readings (a device that was offline) find their day.
DAYS_BEHIND = 1
_DAY_NAME = re.compile(r"^readings_p(\d{8})$")


def is_partitioned() -> bool:
    """Whether this database's readings table is partitioned (PostgreSQL since the migration
    that made it so)."""
    if db.engine.dialect.name != "postgresql":
        return False
    kind = db.session.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:name)"), {"name": PARENT}
    ).scalar()
    return kind == "p"


def partition_name(day: date) -> str:
    return f"readings_p{day:%Y%m%d}"


def day_partitions() -> dict[date, str]:
    """The day partitions that exist, by day."""
    names = db.session.execute(
        text(
            "SELECT c.relname FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:parent)"
        ),
        {"parent": PARENT},
    ).scalars()
    found = {}
    for name in names:
        match = _DAY_NAME.match(name)
        if match:
            found[datetime.strptime(match.group(1), "%Y%m%d").date()] = name
    return found


def _bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def make_day(day: date) -> str:
    """Make one day's partition, moving that day's readings out of the DEFAULT partition
    first (PostgreSQL refuses to attach a day the DEFAULT partition holds rows of). Runs in the
    caller's transaction; the caller commits."""
    name = partition_name(day)
    start, end = _bounds(day)
    values = {"start": start, "end": end}
    session = db.session
    session.execute(text(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS)"))
    session.execute(
        text(
            f"WITH moved AS (DELETE FROM {DEFAULT} "
            "WHERE recorded_at >= :start AND recorded_at < :end RETURNING *) "
            f"INSERT INTO {name} SELECT * FROM moved"
        ),
        values,
    )
    # Attaching takes a lighter lock on the parent than CREATE ... PARTITION OF: uploads to
    # other days go on meanwhile. It builds the parent's indexes on the new table.
    start_sql, end_sql = (v.isoformat() for v in (start, end))
    session.execute(
        text(
            f"ALTER TABLE {PARENT} ATTACH PARTITION {name} "
            f"FOR VALUES FROM ('{start_sql}') TO ('{end_sql}')"
        )
    )
    return name


def ensure_days(now: datetime, ahead: int = DAYS_AHEAD, behind: int = DAYS_BEHIND) -> list[str]:
    """Make the missing day partitions from ``behind`` days ago to ``ahead`` days on; return
    their names. Nothing on SQLite or an unpartitioned table. The caller commits."""
    if not is_partitioned():
        return []
    today = now.astimezone(UTC).date()
    existing = day_partitions()
    wanted = [today + timedelta(days=n) for n in range(-behind, ahead + 1)]
    return [make_day(day) for day in wanted if day not in existing]


def drop_days_before(cutoff: datetime, lock_seconds: float = 2.0) -> dict[str, int]:
    """Drop every day partition that ends at or before ``cutoff`` (all its readings are
    expired); return their names with the readings each held. The DEFAULT partition's old rows
    are retention's to delete row by row. Dropping waits at most ``lock_seconds`` for the
    table's lock (an upload in flight holds it), so it never queues ingest behind it for long;
    past that it raises OperationalError and the next pass tries again. The caller commits."""
    if not is_partitioned():
        return {}
    db.session.execute(text(f"SET LOCAL lock_timeout = '{int(lock_seconds * 1000)}ms'"))
    dropped = {}
    for day, name in sorted(day_partitions().items()):
        if _bounds(day)[1] <= cutoff:
            rows = db.session.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()
            db.session.execute(text(f"DROP TABLE {name}"))
            dropped[name] = rows
    return dropped
