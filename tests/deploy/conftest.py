"""Helpers for the deployment files in deploy/: the units' commands and settings, made runnable
here (the virtualenv and the instance folder moved to where this machine has them)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
ENV_EXAMPLE = DEPLOY / "portal.env.example"
GUNICORN_CONF = DEPLOY / "gunicorn.conf.py"

# Where the units expect things on a production host.
PROD_VENV = "/opt/portal/venv"
PROD_INSTANCE = "/var/lib/portal"
PROD_GUNICORN_CONF = "/etc/portal/gunicorn.conf.py"
# This machine's virtualenv: the one running the tests (not resolved: a venv's python is a link).
VENV = str(Path(sys.executable).parent.parent)

REQUIRE_ENV = "PORTAL_TEST_REQUIRE_DEPLOY"


def require(path: str, what: str) -> str:
    """``path`` when it exists; else skip, or fail when PORTAL_TEST_REQUIRE_DEPLOY is set."""
    if os.path.exists(path):
        return path
    message = f"{what} not found at {path}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message}, and {REQUIRE_ENV}=1 requires it")
    pytest.skip(message)


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    return require(found, "systemd-analyze (Debian package systemd)")


def unit_settings(name: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file, keys that repeat (After=) keeping all their values."""
    settings: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def local_command(name: str) -> list[str]:
    """The unit's ExecStart with this machine's virtualenv and deploy/gunicorn.conf.py."""
    (exec_start,) = unit_settings(name)["ExecStart"]
    argv = shlex.split(exec_start)
    return [
        arg.replace(PROD_VENV, VENV).replace(PROD_GUNICORN_CONF, str(GUNICORN_CONF)) for arg in argv
    ]


def example_env() -> dict[str, str]:
    """The variables deploy/portal.env.example sets, read by a shell the way deploy/README.md
    runs the flask commands (``set -a; . portal.env``)."""
    shell = subprocess.run(
        ["sh", "-c", 'set -a && . "$1" && env -0', "sh", str(ENV_EXAMPLE)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        check=True,
    )
    pairs = (item.partition("=") for item in shell.stdout.split("\0") if item)
    return {key: value for key, _, value in pairs if key.startswith("PORTAL_")}


def unit_env(instance: Path) -> dict[str, str]:
    """The environment a unit's process gets, with the instance folder at ``instance``.

    The machine's own PORTAL_* and FLASK_* variables are dropped, as systemd starts a unit
    without them. Two settings are replaced because this machine has neither service: the
    database (SQLite in the instance folder instead of PostgreSQL) and the rate limiter's store
    (memory instead of Redis).
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PORTAL_", "FLASK_", "GUNICORN_"))
    }
    for key, value in example_env().items():
        env[key] = value.replace(PROD_INSTANCE, str(instance))
    env["PORTAL_DATABASE_URL"] = f"sqlite:///{instance}/portal.sqlite3"
    env["PORTAL_RATELIMIT_STORAGE_URI"] = "memory://"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="session")
def instance(tmp_path_factory) -> Path:
    """An instance folder standing in for /var/lib/portal, its SQLite database migrated with
    ``flask db upgrade`` as deploy/README.md does before the first start."""
    folder = tmp_path_factory.mktemp("var-lib-portal")
    flask = os.path.join(VENV, "bin", "flask")
    result = subprocess.run(
        [flask, "--app", "portal", "db", "upgrade"],
        cwd=folder,
        env=unit_env(folder),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return folder
