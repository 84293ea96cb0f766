"""Start-up of the ``flask`` command: a command that serves no request (``scheduler tick``)
skips the web side, which is built, the same as a server's, when something first uses it."""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import click
from flask.cli import ScriptInfo

from portal.extensions import db
from tests.conftest import make_app

WEB_SIDE_PACKAGES = {"flask_admin", "pydantic", "alembic", "flask_migrate", "flask_wtf"}


def run_flask(app, *args: str, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ, PORTAL_DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
               PORTAL_SECRET_KEY="test-secret-key")
    env.pop("FLASK_APP", None)
    return subprocess.run([sys.executable, *python_flags, "-m", "flask", "--app", "portal", *args],
                          env=env, capture_output=True, text=True, timeout=120)


def imported_packages(importtime_log: str) -> set[str]:
    """Top-level package names from ``python -X importtime`` output."""
    return {line.rsplit("|", 1)[1].strip().split(".")[0]
            for line in importtime_log.splitlines() if line.startswith("import time:")}


def test_scheduler_tick_starts_without_the_admin_the_api_or_alembic(app):
    result = run_flask(app, "scheduler", "tick", python_flags=("-X", "importtime"))

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
    imported = imported_packages(result.stderr)
    assert "sqlalchemy" in imported  # the log is read right
    assert imported & WEB_SIDE_PACKAGES == set()


def test_flask_routes_lists_every_route_the_server_app_has(app):
    result = run_flask(app, "routes")

    assert result.returncode == 0, result.stderr
    listed = {(line.split()[0], line.split()[-1]) for line in result.stdout.splitlines()[2:]}
    assert listed == {(rule.endpoint, rule.rule) for rule in app.url_map.iter_rules()}


def test_the_command_line_app_serves_like_the_server_app_from_concurrent_first_requests(
        app, database_url, tmp_path):
    with click.Context(click.Command("flask"), obj=ScriptInfo()):
        cli_app = make_app(tmp_path, database_url)
    client = cli_app.test_client()
    paths = ["/healthz", "/api/v1/devices", "/admin/", "/login"] * 4

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda path: client.get(path).status_code, paths))
    with cli_app.app_context():
        db.engine.dispose()

    assert statuses == [200, 401, 302, 200] * 4
    assert ([(r.endpoint, r.rule) for r in cli_app.url_map.iter_rules()]
            == [(r.endpoint, r.rule) for r in app.url_map.iter_rules()])


def test_flask_db_runs_flask_migrate(app):
    result = run_flask(app, "db", "--help")

    assert result.returncode == 0, result.stderr
    assert "Perform database migrations." in result.stdout
    assert "upgrade" in result.stdout and "--directory" in result.stdout


def test_a_web_side_that_failed_to_build_fails_again_rather_than_serving_half_built():
    from portal.cli import CommandLineApp

    attempts = []

    def build(app):
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("the admin failed to start")
        app.add_url_rule("/ok", "ok", lambda: "ok")

    app = CommandLineApp("half_built")
    app.defer_web(build)
    try:
        app.url_map
    except RuntimeError as exc:
        assert "admin failed" in str(exc)
    else:
        raise AssertionError("the first use should have raised")
    assert app.test_client().get("/ok").get_data(as_text=True) == "ok"  # built on the retry
    assert len(attempts) == 2
