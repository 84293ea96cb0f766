"""Portal: a Flask-Admin portal for fleets of small devices. ``create_app`` builds it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, redirect, request, url_for
from sqlalchemy import event
from werkzeug.middleware.proxy_fix import ProxyFix

from portal import models  # noqa: F401  (registers the tables on db.metadata)
from portal.admin import init_admin
from portal.api import init_api
from portal.api.errors import drop_read_only_connections, pool_no_read_only_connection
from portal.auth import bp as auth_bp
from portal.cli import register as register_cli
from portal.config import instance_path, load_config
from portal.extensions import csrf, db, limiter, login_manager, migrate
from portal.headers import init_headers
from portal.health import bp as health_bp
from portal.i18n import init_i18n
from portal.services import audit
from portal.sessions import CookieSessionInterface, load_user

SQLITE_MMAP_BYTES = 256 * 1024 * 1024
# Settings that give every request a limit, checked by the limiter before each request.
APP_WIDE_LIMITS = ("RATELIMIT_DEFAULT", "RATELIMIT_APPLICATION", "RATELIMIT_META")
MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings, the database, extensions, blueprints, the admin, hooks, CLI."""
    app = Flask(__name__, instance_relative_config=True, instance_path=instance_path(config))
    os.makedirs(app.instance_path, exist_ok=True)
    load_config(app, config)
    app.session_interface = CookieSessionInterface()
    init_database(app)
    init_extensions(app)
    register_blueprints(app)
    init_admin(app)
    register_hooks(app)
    register_cli(app)
    if app.config["PROXY_COUNT"]:
        n = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    return app


def init_database(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS, render_as_batch=True)
    with app.app_context():
        event.listen(db.engine, "handle_error", drop_read_only_connections)
        event.listen(db.engine, "checkin", pool_no_read_only_connection)
        if db.engine.dialect.name == "sqlite":
            event.listen(db.engine, "connect", _sqlite_pragmas(app))


def _sqlite_pragmas(app: Flask):
    busy = int(app.config["SQLITE_BUSY_TIMEOUT_MS"])

    def on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Read pages through a memory map: with several workers, each commit by one empties
        # the others' page caches, and re-reading through the map costs no system calls.
        cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
        cursor.close()

    return on_connect


def init_extensions(app: Flask) -> None:
    init_i18n(app)
    csrf.init_app(app)
    limiter.init_app(app)
    if not any(app.config.get(name) for name in APP_WIDE_LIMITS):
        # Without app-wide limits only views decorated with ``@limiter.limit`` are limited
        # (the login form), and their decorator checks on its own. The app-wide check would
        # find nothing to do, at ~0.1 ms on every request, device hot paths included: drop it.
        # (The after-request hook stays: it counts failed logins and sets X-RateLimit headers.)
        app.before_request_funcs[None].remove(limiter._check_request_limit)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = None
    login_manager.session_protection = "basic"

    login_manager.user_loader(load_user)


def register_blueprints(app: Flask) -> None:
    app.register_blueprint(auth_bp)
    app.register_blueprint(health_bp)
    init_api(app)


def register_hooks(app: Flask) -> None:
    @app.before_request
    def _audit_origin():
        via = (
            "api"
            if request.path.startswith("/api/")
            else ("admin" if request.path.startswith("/admin") else "web")
        )
        audit.set_origin(via, request.remote_addr or "")

    init_headers(app)

    @app.get("/")
    def index():
        return redirect(url_for("admin.index"))
