"""Readings partitioned by UTC week on PostgreSQL: each week's partition made ahead of time by
the scheduler pass, and whole weeks dropped once retention has passed them.

Why weeks: measured by ``make bench --growth 10`` (10,000,000 readings over 70 days), daily
partitions (80 of them) cost every readings query 3-5 ms of planning and start-up, so the
list pages grew 1.4-1.8x from 1 M to 10 M readings; with weekly partitions (15) a query
takes about 1 ms, as on a small table. Retention still deletes each reading when it expires
(in short steps, see services/retention.py); a week's partition goes whole once all of it
has expired, so a backlog of whole weeks (a shorter retention set, a first upgrade) goes
in one statement each. Why not pg_partman: it must be installed on the database server and
created as an extension by a superuser; these few statements need neither.

A reading outside every week's partition (a device whose clock is years off, or a week not
made yet) goes to the DEFAULT partition, so an upload never fails for its timestamp; making
a week moves that week's rows out of it first. SQLite keeps one table and none of this
applies.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from portal.extensions import db

PARENT = "readings"
DEFAULT = "readings_default"
# The weeks holding the days from DAYS_BEHIND ago to DAYS_AHEAD on are made: a partition exists
# before its first reading arrives even when the scheduler is down for a few days, and late
# readings (a device that was offline) find their week.
DAYS_AHEAD = 7
DAYS_BEHIND = 1
WEEK = timedelta(days=7)
_WEEK_NAME = re.compile(r"^readings_w(\d{8})$")


def is_partitioned() -> bool:
    """Whether this database's readings table is partitioned (PostgreSQL since the migration
    that made it so)."""
    if db.engine.dialect.name != "postgresql":
        return False
    kind = db.session.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:name)"), {"name": PARENT}
    ).scalar()
    return kind == "p"


def week_of(day: date) -> date:
    """The Monday that starts the (ISO, UTC) week holding ``day``."""
    return day - timedelta(days=day.weekday())


def partition_name(day: date) -> str:
    """The name of the partition of the week that holds ``day``: its Monday."""
    return f"readings_w{week_of(day):%Y%m%d}"


def week_partitions() -> dict[date, str]:
    """The week partitions that exist, by their Monday."""
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
        match = _WEEK_NAME.match(name)
        if match:
            found[datetime.strptime(match.group(1), "%Y%m%d").date()] = name
    return found


def _bounds(day: date) -> tuple[datetime, datetime]:
    """The instants the partition of ``day``'s week holds: from its Monday, for a week."""
    start = datetime.combine(week_of(day), time(), tzinfo=UTC)
    return start, start + WEEK


# Two schedulers may run side by side: one makes or drops partitions at a time.
_UPKEEP_LOCK = 0x7265616469  # "readi"
# How long making or dropping a week waits for a table's lock before giving up until the next
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


def make_week(day: date) -> str | None:
    """Make the partition of ``day``'s week in a transaction of its own, moving that week's
    readings out of the DEFAULT partition first (PostgreSQL refuses to attach a range the
    DEFAULT partition holds rows of); the DEFAULT partition takes no new rows meanwhile.
    Returns its name, or None when another scheduler is at it (or made it). Commits."""
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
        # to other weeks go on meanwhile. It builds the parent's indexes on the new table.
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
        return None  # busy: the DEFAULT partition takes the week's readings until next pass
    except Exception:
        session.rollback()
        raise
    return name


def ensure_partitions(
    now: datetime, ahead: int = DAYS_AHEAD, behind: int = DAYS_BEHIND
) -> list[str]:
    """Make the missing partitions of the weeks that hold the days from ``behind`` days ago to
    ``ahead`` days on, each in a transaction of its own; return their names. Nothing on
    SQLite or an unpartitioned table."""
    if not is_partitioned():
        return []
    today = now.astimezone(UTC).date()
    existing = week_partitions()
    db.session.commit()  # the catalogue read ends here; each week is its own transaction
    wanted = sorted({week_of(today + timedelta(days=n)) for n in range(-behind, ahead + 1)})
    made = [make_week(monday) for monday in wanted if monday not in existing]
    return [name for name in made if name]


def drop_before(cutoff: datetime) -> dict[str, int]:
    """Drop every week partition that ends at or before ``cutoff`` (all its readings are
    expired), one per transaction, so the table's lock is held for one drop at a time and
    never waited for longer than LOCK_TIMEOUT_MS (past that it stops: the next pass goes
    on). Returns the dropped partitions with the readings each held. The DEFAULT
    partition's old rows are retention's to delete row by row. Commits."""
    if not is_partitioned():
        return {}
    weeks = sorted(week_partitions().items())
    db.session.commit()
    dropped = {}
    for monday, name in weeks:
        if _bounds(monday)[1] > cutoff:
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
