"""The on-disk reading buffer: bounded, survives restarts, and keeps a batch's Idempotency-Key.

Readings wait in a small SQLite file in the state directory. ``next_batch`` seals the oldest
readings into a batch with a fresh key; until the server accepts it (``ack``) the same batch comes
back with the same key and the same readings, so a re-sent batch is never stored twice.
When the buffer is full the oldest readings not yet sealed into a batch are dropped.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

log = logging.getLogger(__name__)

METRIC_RE = re.compile(r"^[a-z0-9_.-]{1,64}$")
MAX_BATCH = 1000  # the contract's limit per upload

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    ts TEXT NOT NULL,
    batch_key TEXT
);
CREATE INDEX IF NOT EXISTS ix_readings_batch ON readings (batch_key, seq);
"""


@dataclass(frozen=True)
class Batch:
    key: str
    readings: list[dict[str, Any]]


def utc_stamp(at: datetime | None = None) -> str:
    at = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clean_reading(reading: dict[str, Any]) -> tuple[str, float, str]:
    """Check one reading as the server would; raise ValueError naming what is wrong."""
    metric, value = reading.get("metric"), reading.get("value")
    if not isinstance(metric, str) or not METRIC_RE.match(metric):
        raise ValueError(f"bad metric {metric!r}: 1-64 characters a-z 0-9 _ . -")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"bad value {value!r} for {metric}: a finite number")
    ts = reading.get("ts") or utc_stamp()
    if isinstance(ts, datetime):
        ts = utc_stamp(ts)
    return metric, float(value), str(ts)


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a board loses power; a buffered reading must not
    return conn


class ReadingQueue:
    """Readings waiting for upload, at most ``max_readings`` of them."""

    def __init__(self, state_dir: str, max_readings: int = 10_000, batch_size: int = 500) -> None:
        if not 1 <= batch_size <= MAX_BATCH or max_readings < batch_size:
            raise ValueError(f"need 1 <= batch_size <= {MAX_BATCH} and max_readings >= batch_size")
        os.makedirs(state_dir, exist_ok=True)
        self.max_readings, self.batch_size = max_readings, batch_size
        self.dropped = 0
        self._conn = connect(os.path.join(state_dir, "readings.sqlite3"))
        self._conn.executescript(SCHEMA)

    def put(self, readings: Iterable[dict[str, Any]]) -> int:
        """Buffer valid readings (invalid ones are logged and skipped); return how many."""
        rows = []
        for reading in readings:
            try:
                rows.append(clean_reading(reading))
            except (ValueError, AttributeError) as exc:
                log.warning("skipping reading %r: %s", reading, exc)
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(
                "INSERT INTO readings (metric, value, ts) VALUES (?, ?, ?)", rows
            )
            self._trim()
        return len(rows)

    def _trim(self) -> None:
        excess = len(self) - self.max_readings
        if excess <= 0:
            return
        dropped = self._conn.execute(
            "DELETE FROM readings WHERE seq IN (SELECT seq FROM readings WHERE batch_key IS NULL"
            " ORDER BY seq LIMIT ?)",
            (excess,),
        ).rowcount
        self.dropped += dropped
        log.warning("buffer full (%d readings): dropped the %d oldest", self.max_readings, dropped)

    def next_batch(self) -> Batch | None:
        """The batch to send: the unacknowledged one if any, else a new one with a new key."""
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            row = self._conn.execute(
                "SELECT batch_key FROM readings WHERE batch_key IS NOT NULL ORDER BY seq LIMIT 1"
            ).fetchone()
            key = row[0] if row else None
            if key is None:
                key = uuid.uuid4().hex
                sealed = self._conn.execute(
                    "UPDATE readings SET batch_key = ? WHERE seq IN (SELECT seq FROM readings"
                    " WHERE batch_key IS NULL ORDER BY seq LIMIT ?)",
                    (key, self.batch_size),
                )
                if sealed.rowcount == 0:
                    return None
            rows = self._conn.execute(
                "SELECT metric, value, ts FROM readings WHERE batch_key = ? ORDER BY seq", (key,)
            ).fetchall()
        return Batch(key, [{"metric": m, "value": v, "ts": ts} for m, v, ts in rows])

    def ack(self, batch: Batch) -> None:
        """Forget a batch the server has stored (or refused for good)."""
        with self._conn:
            self._conn.execute("DELETE FROM readings WHERE batch_key = ?", (batch.key,))

    def __len__(self) -> int:
        count: int = self._conn.execute("SELECT count(*) FROM readings").fetchone()[0]
        return count

    def close(self) -> None:
        self._conn.close()
