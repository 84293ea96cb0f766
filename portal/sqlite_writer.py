"""One SQLite writer at a time across processes, queued by the kernel instead of by sleeping.

SQLite lets one connection write at a time. Another connection that wants to write gets
SQLITE_BUSY, and the busy handler sleeps (1, 2, 5, ... up to 100 ms at a time) before it tries
again: under load a waiting writer sleeps through moments when the database is free, and the
unlucky ones wait over a second (readings uploads from 16 boards through 4 gunicorn workers: p99
1.6 s). Here a connection takes an exclusive ``flock`` on ``<database>-writer`` before its first
write of a transaction and lets go after COMMIT or ROLLBACK. A writer waiting in ``flock`` is
woken the moment the lock is free, and SQLite's own write lock is free then too.

Readers never touch the lock (WAL lets them read while one writes). A process that dies lets go
of the lock with its file descriptors. Writers that do not use this class (the ``sqlite3`` shell,
a migration's DDL) still meet SQLite's busy handler, as before.
"""
from __future__ import annotations

import fcntl
import os
import sqlite3
from typing import Any

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def lock_path(database: str) -> str | None:
    """Where the lock of ``database`` (a file name as sqlite3.connect takes it) lives, or None
    for a database without a file of its own (in memory, or a URI)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database + "-writer"


def _writes(sql: str) -> bool:
    return sql.lstrip()[:7].upper().startswith(WRITES)


class WriterLockConnection(sqlite3.Connection):
    """``sqlite3.connect(..., factory=WriterLockConnection)``."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        path = lock_path(os.fsdecode(database))
        self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600) if path else None
        self._writing = False

    def cursor(self, factory: type[sqlite3.Cursor] | None = None) -> sqlite3.Cursor:
        return super().cursor(factory or WriterLockCursor)

    def before_write(self) -> None:
        if not self._writing and self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            self._writing = True

    def release(self) -> None:
        if self._writing:
            self._writing = False
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None


class WriterLockCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return self._run(super().execute, sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> sqlite3.Cursor:
        return self._run(super().executemany, sql, seq_of_parameters)

    def _run(self, method: Any, sql: str, parameters: Any) -> sqlite3.Cursor:
        if not _writes(sql):
            return method(sql, parameters)
        self.connection.before_write()
        try:
            return method(sql, parameters)
        finally:
            # A write outside a transaction (autocommit, or one that failed before it began
            # one) has nothing left to commit: let go now.
            if not self.connection.in_transaction:
                self.connection.release()
