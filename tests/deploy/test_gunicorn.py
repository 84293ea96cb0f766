"""deploy/gunicorn.conf.py with the command of portal-web.service: gunicorn accepts it, serves the
portal with it, and stops gracefully on SIGTERM (systemd's stop)."""

from __future__ import annotations

import re
import runpy
import signal
import subprocess
import time
import types
from pathlib import Path

import pytest
import requests
from gunicorn.config import Config

from tests.deploy.conftest import GUNICORN_CONF, local_command, require, unit_env, unit_settings

LISTENING = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")


def gunicorn_command(*args: str) -> list[str]:
    command = local_command("portal-web.service")
    require(command[0], "gunicorn (the portal's [prod] extra)")
    # Options go before the app: gunicorn takes the last positional argument as the app.
    return [*command[:-1], *args, command[-1]]


@pytest.mark.parametrize("runtime_directory", [None, "/run/portal-web"])
def test_every_name_in_the_config_is_a_gunicorn_setting(monkeypatch, runtime_directory):
    # Both sides of the config's RUNTIME_DIRECTORY test (set by systemd, unset elsewhere).
    if runtime_directory:
        monkeypatch.setenv("RUNTIME_DIRECTORY", runtime_directory)
    else:
        monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    names = {
        name
        for name, value in runpy.run_path(str(GUNICORN_CONF)).items()
        if not name.startswith("__") and not isinstance(value, types.ModuleType)
    }
    assert names - set(Config().settings) == set()


def test_graceful_stop_fits_in_the_units_stop_timeout():
    graceful = runpy.run_path(str(GUNICORN_CONF))["graceful_timeout"]
    (stop_timeout,) = unit_settings("portal-web.service")["TimeoutStopSec"]
    assert graceful < int(stop_timeout)


def test_gunicorn_check_config_loads_the_app(instance):
    result = subprocess.run(
        gunicorn_command("--check-config"),
        cwd=instance,
        env=unit_env(instance),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def wait_for_address(process: subprocess.Popen, log: Path, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = LISTENING.search(log.read_text())
        if found:
            return found.group(1)
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
        time.sleep(0.05)
    pytest.fail(f"gunicorn did not listen within {timeout} s:\n{log.read_text()}")


def get_when_up(url: str, timeout: float = 20) -> requests.Response:
    """GET, waiting while the workers boot (the master listens before they accept)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(url, timeout=5)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_gunicorn_serves_the_portal_and_stops_cleanly_on_sigterm(instance, tmp_path):
    out, err = tmp_path / "access.log", tmp_path / "error.log"
    with out.open("w") as stdout, err.open("w") as stderr:
        # Port 0: the kernel picks a free port, and gunicorn logs which.
        process = subprocess.Popen(
            gunicorn_command("--bind", "127.0.0.1:0"),
            cwd=instance,
            env=unit_env(instance),
            stdout=stdout,
            stderr=stderr,
        )
    try:
        base = wait_for_address(process, err)
        health = get_when_up(f"{base}/healthz")
        login = requests.get(f"{base}/login", timeout=5)
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = err.read_text()
    assert health.status_code == 200, log
    assert health.json() == {"status": "ok"}
    assert login.status_code == 200, log
    assert 'name="password"' in login.text
    assert returncode == 0, log
    assert "Shutting down: Master" in log
    assert '"GET /healthz HTTP/1.1" 200' in out.read_text()
