"""The command of portal-scheduler.service: it runs passes against the database until SIGTERM
(systemd's stop), then exits 0 (so Restart=always leaves a stopped unit stopped)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from contextlib import closing

import pytest

from tests.deploy.conftest import local_command, unit_env


def count_passes(instance) -> int:
    # WAL mode lets this read beside the scheduler's writes.
    with closing(sqlite3.connect(instance / "portal.sqlite3")) as connection:
        return connection.execute("SELECT count(*) FROM scheduler_passes").fetchone()[0]


def wait_for_passes(process: subprocess.Popen, instance, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while count_passes(instance) < count:
        if process.poll() is not None:
            pytest.fail(f"the scheduler exited with {process.returncode}")
        if time.monotonic() > deadline:
            pytest.fail(f"fewer than {count} passes recorded within {timeout} s")
        time.sleep(0.1)


def test_scheduler_unit_command_runs_passes_and_exits_0_on_sigterm(instance, tmp_path):
    before = count_passes(instance)
    err = tmp_path / "scheduler.log"
    with err.open("w") as stderr:
        process = subprocess.Popen(
            [*local_command("portal-scheduler.service"), "--interval", "1"],
            cwd=instance,
            env=unit_env(instance),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        # Two passes: the loop went on after its first sleep.
        wait_for_passes(process, instance, before + 2)
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = err.read_text()
    assert returncode == 0, log
    assert "Scheduler running" in log
    assert log.rstrip().endswith("Scheduler stopped.")
