"""SQLite writers queue on a file lock instead of sleeping in SQLite's busy handler."""

import fcntl
import os
import sqlite3
import stat
import threading

import pytest

from portal.sqlite_writer import WriterLockConnection, lock_path


def connect(path, timeout=5.0):
    conn = sqlite3.connect(
        path, timeout=timeout, factory=WriterLockConnection, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def lock_is_held(path) -> bool:
    fd = os.open(lock_path(path), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@pytest.fixture
def path(tmp_path):
    path = str(tmp_path / "w.sqlite3")
    conn = connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    return path


def test_a_writer_holds_the_lock_from_its_first_write_to_commit(path):
    writer = connect(path)
    writer.cursor().execute("SELECT count(*) FROM t").fetchall()
    assert not lock_is_held(path)
    writer.cursor().execute("INSERT INTO t VALUES (1)")
    assert lock_is_held(path)
    writer.commit()
    assert not lock_is_held(path)


def test_a_second_writer_waits_for_the_first_then_writes(path):
    first, second = connect(path), connect(path)
    first.cursor().execute("INSERT INTO t VALUES (1)")  # a write transaction, not committed
    written = threading.Event()

    def write():
        second.cursor().execute("INSERT INTO t VALUES (2)")
        second.commit()
        written.set()

    writer = threading.Thread(target=write)
    writer.start()
    assert not written.wait(0.3), "the second writer should wait for the first"
    first.commit()
    writer.join(5)
    assert written.is_set()
    assert sorted(first.execute("SELECT x FROM t").fetchall()) == [(1,), (2,)]


def test_a_writer_gives_up_after_the_busy_timeout_as_sqlite_would(path):
    first, second = connect(path), connect(path, timeout=0.2)
    first.cursor().execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        second.cursor().execute("INSERT INTO t VALUES (2)")
    first.commit()
    second.cursor().execute("INSERT INTO t VALUES (2)")  # and can write once it is free
    second.commit()


def test_a_lock_file_it_cannot_open_means_writing_without_it(path, monkeypatch):
    real_open = os.open

    def refuse_lock(name, *args, **kwargs):
        if str(name).endswith("-writer"):
            raise PermissionError(name)
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse_lock)
    conn = connect(path)
    conn.cursor().execute("INSERT INTO t VALUES (1)")
    conn.commit()
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_the_lock_file_takes_the_database_files_permissions(tmp_path):
    database = tmp_path / "shared.sqlite3"
    sqlite3.connect(database).close()
    os.chmod(database, 0o664)
    connect(str(database)).close()
    assert stat.S_IMODE(os.stat(lock_path(str(database))).st_mode) == 0o664 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_readers_do_not_wait_for_a_writer(path):
    writer, reader = connect(path), connect(path)
    writer.cursor().execute("INSERT INTO t VALUES (1)")
    assert reader.cursor().execute("SELECT count(*) FROM t").fetchone() == (0,)
    writer.rollback()


def test_a_rollback_and_an_autocommit_write_let_go(path):
    first, second = connect(path), connect(path)
    first.cursor().execute("INSERT INTO t VALUES (1)")
    first.rollback()
    second.isolation_level = None  # autocommit: the write ends with its statement
    second.cursor().execute("INSERT INTO t VALUES (2)")
    first.cursor().execute("INSERT INTO t VALUES (3)")  # would block forever if still held
    first.commit()
    assert sorted(first.execute("SELECT x FROM t").fetchall()) == [(2,), (3,)]


def test_databases_without_a_file_have_no_lock():
    assert lock_path(":memory:") is None and lock_path("file:x?mode=memory") is None
    conn = sqlite3.connect(":memory:", factory=WriterLockConnection)
    conn.cursor().execute("CREATE TABLE t (x)")
    conn.cursor().execute("INSERT INTO t VALUES (1)")
    conn.commit()
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
