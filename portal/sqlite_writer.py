"""One SQLite writer at a time across processes, queued by the kernel instead of by sleeping.

SQLite lets one connection write at a time. Another connection that wants to write gets
SQLITE_BUSY, and the busy handler sleeps (1, 2, 5, ... up to 100 ms at a time) before it tries
again: under load a waiting writer sleeps through moments when the database is free, and the
unlucky ones wait over a second (readings uploads from 16 boards through 4 gunicorn workers: p99
1.6 s). Here a connection takes an exclusive ``flock`` on ``<database>-writer`` before its first
write of a transaction and lets go after COMMIT or ROLLBACK. A waiting writer tries again every
0.2 to 2 ms, so it goes on almost as soon as the last one commits, and SQLite's own write lock
is free by then.

Readers never touch the lock (WAL lets them read while one writes). A process that dies lets go
of the lock with its file descriptors. A writer waits for the lock no longer than the connection's
busy timeout, then gets SQLite's own "database is locked" error, as without the lock. Writers
that do not use this class (the ``sqlite3`` shell, a migration's DDL) still meet SQLite's busy
handler, as before. Where the lock file cannot be opened (another user made it, or its folder
is read-only), a connection writes without it.

A connection that SQLite had to open read-only (the file or its folder refused writes then)
stays read-only for life, even after the file takes writes again. It says so in ``read_only``,
and the pool replaces it rather than keep it (``api/errors.py``), along with the lock it may
have failed to open.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
import time
import weakref
from typing import Any

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def lock_path(database: str) -> str | None:
    """Where the lock of ``database`` (a file name as sqlite3.connect takes it) lives, or None
    for a database without a file of its own (in memory, or a URI)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database + "-writer"


def _open_lock(database: str) -> int | None:
    """The lock file's descriptor, made with the database file's permissions (as SQLite makes
    its -wal and -shm files), so processes of other users who may write the database may take
    the lock too; None when there is no file to lock for, or it cannot be opened."""
    path = lock_path(database)
    if path is None:
        return None
    try:
        mode = stat.S_IMODE(os.stat(database).st_mode)
    except OSError:
        mode = 0o644
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, mode)
    except OSError:
        return None


def _close_fd(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def _writes(sql: str) -> bool:
    return sql.lstrip()[:7].upper().startswith(WRITES)


class WriterLockConnection(sqlite3.Connection):
    """``sqlite3.connect(..., factory=WriterLockConnection)``."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._timeout = float(kwargs.get("timeout", args[0] if args else 5.0))
        name = os.fsdecode(database)
        # Asked after SQLite opened the file, so a new database exists by now.
        self.read_only = lock_path(name) is not None and not os.access(name, os.W_OK)
        self._lock_fd = _open_lock(name)
        self._writing = False
        # A connection dropped without close() still gives its descriptor back.
        self._closer = weakref.finalize(self, _close_fd, self._lock_fd)

    def cursor(self, factory: type[sqlite3.Cursor] | None = None) -> sqlite3.Cursor:
        return super().cursor(factory or WriterLockCursor)

    def before_write(self) -> None:
        if self._writing or self._lock_fd is None:
            return
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._wait_for_lock()
        self._writing = True

    def _wait_for_lock(self) -> None:
        """Wait up to the busy timeout. Polled, since flock itself cannot time out: every
        0.2 ms at first, backing off to 2 ms (SQLite's own handler sleeps up to 100 ms)."""
        deadline = time.monotonic() + self._timeout
        pause = 0.0002
        while True:
            time.sleep(pause)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise sqlite3.OperationalError("database is locked") from None
                pause = min(pause * 2, 0.002)

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
            self._closer()
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
