"""Fresh databases for the benchmark, seeded by bulk insert, and the raw ``sqlite3`` baselines.

The portal's schema comes from ``db.create_all()`` in ``create_app``; rows go in through the
driver (``executemany`` on SQLite, ``COPY`` on PostgreSQL), never through the HTTP API.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex, CreateTable

from bench import data
from bench.data import COLUMNS, Sizes

ADMIN_NAME = "bench-admin"
DEFERRED_INDEXES = ("readings", "commands")
SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")


@dataclass
class Database:
    """A database made for one run; ``drop()`` removes it (PostgreSQL) or leaves the temp file."""

    kind: str  # "sqlite" | "postgresql"
    url: str
    admin_url: str | None = None
    name: str = ""

    def drop(self) -> None:
        if self.kind != "postgresql":
            return
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@dataclass
class Seeded:
    seconds: float
    admin_password: str
    tokens: list[str] = field(repr=False)
    sizes: Sizes = field(default_factory=Sizes)


def sqlite_database(directory: Path, name: str) -> Database:
    path = directory / f"{name}.sqlite3"
    path.unlink(missing_ok=True)
    return Database("sqlite", f"sqlite:///{path}")


def postgres_database(admin_url: str, label: str) -> Database:
    """CREATE a fresh database on the server of ``admin_url`` (a libpq URL to an existing db)."""
    name = f"portal_bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(drivername="postgresql+psycopg", database=name)
    return Database("postgresql", url.render_as_string(hide_password=False), admin_url, name)


def _check_columns(tables) -> None:
    """Fail loudly when a model gained a required column the seed does not fill."""
    for name, columns in COLUMNS.items():
        table = tables[name]
        missing = [
            c.name
            for c in table.columns
            if c.name not in columns
            and not c.nullable
            and not c.primary_key
            and c.server_default is None
        ]
        if missing:
            raise RuntimeError(f"bench/data.py does not fill {name}.{', '.join(missing)}")


def seed(database: Database, sizes: Sizes, now: datetime, instance_dir: Path) -> Seeded:
    """Create the schema and bulk-insert the data set; return the clear device tokens."""
    from portal import create_app
    from portal.extensions import db
    from portal.services import partitions
    from portal.services.rollups import rebuild_rollups
    from portal.services.users import create_user

    tokens = data.device_tokens(sizes.devices)
    password = secrets.token_urlsafe(12)
    started = time.perf_counter()
    app = create_app(
        {
            "DATABASE_URL": database.url,
            "SECRET_KEY": "bench-seed",
            "INSTANCE_PATH": str(instance_dir),
        }
    )
    with app.app_context():
        _check_columns(db.metadata.tables)
        db.create_all()
        # The partitions of the seeded weeks, as the migration and the scheduler pass make
        # them on PostgreSQL (a no-op on SQLite).
        partitions.ensure_partitions(now, behind=sizes.readings_span.days + 1)
        admin = create_user(None, ADMIN_NAME, password, "admin")
        db.session.commit()
        owner_id = admin.id
        db.session.remove()
        # Building an index once after the load is much cheaper than maintaining it per row.
        indexes = [i for name in DEFERRED_INDEXES for i in db.metadata.tables[name].indexes]
        with db.engine.begin() as connection:
            for index in indexes:
                index.drop(connection)
        raw = db.engine.raw_connection()
        try:
            if database.kind == "sqlite":
                _insert_sqlite(raw, sizes, tokens, owner_id, now)
            else:
                _copy_postgres(raw, sizes, tokens, owner_id, now)
        finally:
            raw.close()
        with db.engine.begin() as connection:
            for index in indexes:
                index.create(connection)
        # Ingest keeps the roll-ups; a bulk load goes past it, so it is summarised once here.
        rebuild_rollups()
        db.session.commit()
        if database.kind == "postgresql":
            # What autovacuum does soon after a bulk load: statistics for the planner, and the
            # visibility map that lets a covering index answer without reading the table.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        db.engine.dispose()
    seconds = time.perf_counter() - started
    return Seeded(seconds, password, [t[0] for t in tokens], sizes)


def _rows(sizes: Sizes, tokens, owner_id: int, now: datetime, ts) -> dict[str, Iterable[tuple]]:
    return {
        "devices": data.devices(sizes, tokens, owner_id, now, ts),
        "readings": data.readings(sizes, now, ts),
        "commands": data.commands(sizes, now, ts),
        "schedules": data.schedules(sizes, now, ts),
    }


def _insert_sql(table: str) -> str:
    columns = COLUMNS[table]
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _insert_sqlite(raw, sizes: Sizes, tokens, owner_id: int, now: datetime) -> None:
    cursor = raw.cursor()
    for table, rows in _rows(sizes, tokens, owner_id, now, data.sqlite_ts).items():
        cursor.executemany(_insert_sql(table), rows)
    raw.commit()


def _copy_postgres(raw, sizes: Sizes, tokens, owner_id: int, now: datetime) -> None:
    cursor = raw.cursor()
    for table, rows in _rows(sizes, tokens, owner_id, now, data.pg_ts).items():
        with cursor.copy(f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    for table in ("devices", "schedules"):
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
        )
    raw.commit()


# ---- baselines ---------------------------------------------------------------------------------
def equivalent_ddl() -> list[str]:
    """The portal's own SQLite DDL for the seeded tables (same columns and indexes)."""
    from portal.extensions import db

    dialect = sqlite_dialect.dialect()
    statements = []
    for name in COLUMNS:
        table = db.metadata.tables[name]
        statements.append(str(CreateTable(table).compile(dialect=dialect)))
        statements += [str(CreateIndex(index).compile(dialect=dialect)) for index in table.indexes]
    return statements


def baseline_bulk_insert(path: Path, sizes: Sizes, now: datetime) -> float:
    """Seconds for raw ``sqlite3`` to create the equivalent tables and insert the same rows."""
    tokens = data.device_tokens(sizes.devices)
    path.unlink(missing_ok=True)
    started = time.perf_counter()
    conn = sqlite3.connect(path)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)
    for statement in equivalent_ddl():
        conn.execute(statement)
    for table, rows in _rows(sizes, tokens, 1, now, data.sqlite_ts).items():
        conn.executemany(_insert_sql(table), rows)
    conn.commit()
    conn.close()
    return time.perf_counter() - started


def baseline_executemany(
    path: Path, seconds: float, devices: int, now: datetime, batch: int = 100
) -> dict:
    """Rows/s of raw ``sqlite3``: ``executemany`` of ``batch``-row transactions into readings."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)
    sql = _insert_sql("readings")
    stamp = [data.sqlite_ts(now - timedelta(seconds=batch - i)) for i in range(batch)]
    rows = transactions = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        device_id = 1 + transactions % devices
        conn.execute("BEGIN")
        conn.executemany(
            sql,
            [
                (device_id, "temperature" if i % 2 else "humidity", 20 + (i % 97) / 10, stamp[i])
                for i in range(batch)
            ],
        )
        conn.execute("COMMIT")
        rows += batch
        transactions += 1
    elapsed = time.perf_counter() - started
    conn.close()
    return {
        "rows": rows,
        "transactions": transactions,
        "seconds": round(elapsed, 3),
        "rows_per_s": rows / elapsed,
    }


# ---- threshold rules ---------------------------------------------------------------------------
@dataclass
class SeededRules:
    seconds: float
    count: int
    devices: int  # how many devices have at least one
    channel_id: int


def seed_rules(
    database: Database, count: int, devices: int, now: datetime, instance_dir: Path
) -> SeededRules:
    """Add ``count`` threshold rules on the seeded devices 1 … ``devices`` (disabled:
    ``set_rules_enabled`` turns them on), owned by the bench admin, and the webhook channel
    the raising ones notify; the rules by one bulk INSERT."""
    from sqlalchemy import insert, select

    from portal import create_app
    from portal.extensions import db
    from portal.models import Rule, User
    from portal.services.channels import create_channel

    started = time.perf_counter()
    app = create_app(
        {
            "DATABASE_URL": database.url,
            "SECRET_KEY": "bench-seed",
            "INSTANCE_PATH": str(instance_dir),
        }
    )
    with app.app_context():
        admin = db.session.execute(select(User).where(User.username == ADMIN_NAME)).scalar_one()
        channel, _ = create_channel(
            None, name="bench-alerts", kind="webhook", url="http://127.0.0.1:9/hook", owner=admin
        )
        rows = data.rules(count, devices, admin.id, channel.id, now)
        db.session.execute(insert(Rule.__table__), rows)
        db.session.commit()
        channel_id = channel.id
        db.session.remove()
        db.engine.dispose()
    spread = len({row["device_id"] for row in rows})
    return SeededRules(time.perf_counter() - started, count, spread, channel_id)
