"""Settings: defaults, the loading order, and validation at start-up.

Order: these defaults < ``instance/portal.cfg`` < ``PORTAL_*`` environment < the ``overrides``
mapping given to ``create_app`` (tests use that last one).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

DEFAULTS: dict[str, Any] = {
    "DATABASE_URL": None,  # None: SQLite in the instance folder
    "SQLALCHEMY_TRACK_MODIFICATIONS": False,
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": False,
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": "Lax",
    "WTF_CSRF_TIME_LIMIT": None,  # valid for the life of the session
    "WTF_CSRF_SSL_STRICT": False,
    "PASSWORD_HASH_METHOD": "scrypt",
    # Failed logins: per user name and per address.
    "LOGIN_LIMIT": "10 per 15 minutes",
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_HEADERS_ENABLED": True,
    "RATELIMIT_ENABLED": True,
    # Devices count as online when heard from within this window.
    "DEVICE_ONLINE_SECONDS": 300,
    "COMMAND_LEASE_SECONDS": 60,
    "COMMAND_MAX_ATTEMPTS": 5,
    "COMMAND_DEFAULT_EXPIRES_IN": 3600,
    "TOKEN_TOUCH_SECONDS": 60,
    "SCHEDULER_INTERVAL_SECONDS": 10,
    "SQLITE_BUSY_TIMEOUT_MS": 10000,
}

INT_SETTINGS = (
    "MAX_CONTENT_LENGTH",
    "DEVICE_ONLINE_SECONDS",
    "COMMAND_LEASE_SECONDS",
    "COMMAND_MAX_ATTEMPTS",
    "COMMAND_DEFAULT_EXPIRES_IN",
    "TOKEN_TOUCH_SECONDS",
    "SCHEDULER_INTERVAL_SECONDS",
    "SQLITE_BUSY_TIMEOUT_MS",
)


class ConfigError(RuntimeError):
    """A setting has a value the portal cannot use; the message names the variable."""


def load_config(app: Flask, overrides: Mapping[str, Any] | None = None) -> None:
    """Fill ``app.config`` in the documented order, then derive and validate."""
    app.config.from_mapping(DEFAULTS)
    app.config.from_pyfile("portal.cfg", silent=True)
    app.config.from_prefixed_env("PORTAL")
    if overrides:
        app.config.from_mapping(overrides)
    _database_url(app)
    _secret_key(app)
    _validate(app)


def _database_url(app: Flask) -> None:
    url = app.config.get("DATABASE_URL") or app.config.get("SQLALCHEMY_DATABASE_URI")
    if not url:
        url = "sqlite:///" + os.path.join(app.instance_path, "portal.sqlite3")
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"PORTAL_DATABASE_URL is not a database URL: {url!r}")
    # Users paste plain postgresql:// URLs; the portal talks to PostgreSQL through psycopg 3.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    if url.startswith("sqlite"):
        from portal.sqlite_writer import WriterLockConnection

        timeout = int(app.config["SQLITE_BUSY_TIMEOUT_MS"]) / 1000
        options.setdefault("connect_args", {"timeout": timeout, "factory": WriterLockConnection})
    # No pool_pre_ping: it costs a round trip on every request. A connection the server
    # dropped (a restart) fails one request with 503 instead (api/errors.py), and SQLAlchemy
    # then discards every pooled connection as old as that one.
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def _secret_key(app: Flask) -> None:
    if app.config.get("SECRET_KEY"):
        return
    path = Path(app.instance_path, "secret_key")
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    app.config["SECRET_KEY"] = path.read_text().strip()


def _validate(app: Flask) -> None:
    for name in INT_SETTINGS:
        value = app.config[name]
        try:
            app.config[name] = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"PORTAL_{name} must be an integer, got {value!r}") from None
        if app.config[name] <= 0:
            raise ConfigError(f"PORTAL_{name} must be positive, got {value!r}")
    if app.config["SESSION_COOKIE_SAMESITE"] not in ("Lax", "Strict", "None"):
        raise ConfigError("PORTAL_SESSION_COOKIE_SAMESITE must be Lax, Strict or None")
