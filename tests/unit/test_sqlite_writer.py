"""SQLite writers queue on a file lock instead of failing or sleeping in SQLite's busy handler."""
import sqlite3
import threading

import pytest

from portal.sqlite_writer import WriterLockConnection, lock_path


def connect(path):
    # timeout=0: no busy handler at all, so a writer that met SQLite's own lock would fail.
    conn = sqlite3.connect(path, timeout=0, factory=WriterLockConnection,
                           check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


@pytest.fixture
def path(tmp_path):
    path = str(tmp_path / "w.sqlite3")
    conn = connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    return path


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
