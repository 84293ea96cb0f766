"""The ``flask`` command builds the same app as the server: the same routes, Flask-Migrate's
``db`` group."""

from __future__ import annotations

import os
import subprocess
import sys


def run_flask(app, *args: str, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        PORTAL_DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        PORTAL_SECRET_KEY="test-secret-key",
    )
    env.pop("FLASK_APP", None)
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "flask", "--app", "portal", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def imported_packages(importtime_log: str) -> set[str]:
    """Top-level package names from ``python -X importtime`` output."""
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in importtime_log.splitlines()
        if line.startswith("import time:")
    }


def test_flask_routes_lists_every_route_the_server_app_has(app):
    result = run_flask(app, "routes")

    assert result.returncode == 0, result.stderr
    listed = {(line.split()[0], line.split()[-1]) for line in result.stdout.splitlines()[2:]}
    assert listed == {(rule.endpoint, rule.rule) for rule in app.url_map.iter_rules()}


def test_flask_db_runs_flask_migrate(app):
    result = run_flask(app, "db", "--help")

    assert result.returncode == 0, result.stderr
    assert "Perform database migrations." in result.stdout
    assert "upgrade" in result.stdout and "--directory" in result.stdout
