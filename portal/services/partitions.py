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
from sqlalchemy.exc import OperationalError

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


# Two schedulers may run side by side: one makes or drops partitions at a time.
_UPKEEP_LOCK = 0x7265616469  # "readi"
# How long making or dropping a day waits for a table's lock before giving up until the next
# pass: uploads queue behind a waiting ALTER or DROP, so it must not wait long.
LOCK_TIMEOUT_MS = 2000


def _begin_upkeep() -> bool:
    """In the current transaction: bound lock waits, and take the upkeep lock (False when
    another scheduler holds it)."""
    db.session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'"))
    return bool(
        db.session.execute(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _UPKEEP_LOCK}
        ).scalar()
    )


def _lock_timed_out(exc: OperationalError) -> bool:
    """Whether a statement gave up waiting for a lock (LOCK_TIMEOUT_MS), not the database."""
    return getattr(exc.orig, "sqlstate", None) == "55P03"  # lock_not_available


def _exists(name: str) -> bool:
    return db.session.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is not None


def make_day(day: date) -> str | None:
    """Make one day's partition in a transaction of its own, moving that day's readings out of
    the DEFAULT partition first (PostgreSQL refuses to attach a day the DEFAULT partition holds
    rows of); the DEFAULT partition takes no new rows meanwhile. Returns its name, or None when
    another scheduler is at it (or made it). Commits."""
    name = partition_name(day)
    start, end = _bounds(day)
    session = db.session
    try:
        if not _begin_upkeep() or _exists(name):
            return None
        session.execute(text(f"LOCK TABLE {DEFAULT} IN EXCLUSIVE MODE"))
        session.execute(text(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS)"))
        session.execute(
            text(
                f"WITH moved AS (DELETE FROM {DEFAULT} "
                "WHERE recorded_at >= :start AND recorded_at < :end RETURNING *) "
                f"INSERT INTO {name} SELECT * FROM moved"
            ),
            {"start": start, "end": end},
        )
        # Attaching takes a lighter lock on the parent than CREATE ... PARTITION OF: uploads
        # to other days go on meanwhile. It builds the parent's indexes on the new table.
        session.execute(
            text(
                f"ALTER TABLE {PARENT} ATTACH PARTITION {name} "
                f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
            )
        )
        session.commit()
    except OperationalError as exc:
        session.rollback()
        if not _lock_timed_out(exc):
            raise
        return None  # busy: the DEFAULT partition takes the day's readings until next pass
    except Exception:
        session.rollback()
        raise
    return name


def ensure_days(now: datetime, ahead: int = DAYS_AHEAD, behind: int = DAYS_BEHIND) -> list[str]:
    """Make the missing day partitions from ``behind`` days ago to ``ahead`` days on, each in
    a transaction of its own; return their names. Nothing on SQLite or an unpartitioned
    table."""
    if not is_partitioned():
        return []
    today = now.astimezone(UTC).date()
    existing = day_partitions()
    db.session.commit()  # the catalogue read ends here; each day is its own transaction
    wanted = [today + timedelta(days=n) for n in range(-behind, ahead + 1)]
    made = [make_day(day) for day in wanted if day not in existing]
    return [name for name in made if name]


def drop_days_before(cutoff: datetime) -> dict[str, int]:
    """Drop every day partition that ends at or before ``cutoff`` (all its readings are
    expired), one per transaction, so the table's lock is held for one drop at a time and
    never waited for longer than LOCK_TIMEOUT_MS (past that it stops: the next pass goes
    on). Returns the dropped partitions with the readings each held. The DEFAULT
    partition's old rows are retention's to delete row by row. Commits."""
    if not is_partitioned():
        return {}
    days = sorted(day_partitions().items())
    db.session.commit()
    dropped = {}
    for day, name in days:
        if _bounds(day)[1] > cutoff:
            break
        rows = db.session.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()
        db.session.commit()
        try:
            if not _begin_upkeep():
                break
            if _exists(name):
                db.session.execute(text(f"DROP TABLE {name}"))
            db.session.commit()
        except OperationalError as exc:
            db.session.rollback()
            if not _lock_timed_out(exc):
                raise
            break  # busy: the next pass drops it
        except Exception:
            db.session.rollback()
            raise
        dropped[name] = rows
    return dropped
