"""Settings: defaults, the loading order, and validation at start-up.

Order: these defaults < ``instance/portal.cfg`` < ``PORTAL_*`` environment < the ``overrides``
mapping given to ``create_app`` (tests use that last one).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from babel import Locale, UnknownLocaleError
from flask import Flask
from limits import parse_many

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
    # Requests with an unknown, expired or revoked bearer token, per address.
    "BAD_TOKEN_LIMIT": "30 per minute",
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_HEADERS_ENABLED": True,
    "RATELIMIT_ENABLED": True,
    # Devices count as online when heard from within this window.
    "DEVICE_ONLINE_SECONDS": 300,
    # Open dashboards, device pages and device lists refresh their live parts this often;
    # 0 = never (pages then change only when reloaded).
    "LIVE_SECONDS": 5,
    "COMMAND_LEASE_SECONDS": 60,
    "COMMAND_MAX_ATTEMPTS": 5,
    "COMMAND_DEFAULT_EXPIRES_IN": 3600,
    "TOKEN_TOUCH_SECONDS": 60,
    # Server-side login sessions end after this long idle, and this long in all.
    "SESSION_IDLE_MINUTES": 720,
    "SESSION_MAX_HOURS": 168,
    # Whom two-factor login is required of: none, admin or all.
    "REQUIRE_2FA": "none",
    "SCHEDULER_INTERVAL_SECONDS": 10,
    # Retention, in days (0 = keep forever); the scheduler pass deletes what is older.
    # Readings: a quarter of raw history is what charts and rules look at; roll-ups keep longer.
    "READINGS_RETENTION_DAYS": 90,
    # Ended commands only (never queued or delivered ones): half a year of "what ran when".
    "COMMANDS_RETENTION_DAYS": 180,
    # Audit entries: two years, the span audits and incident reviews usually ask about.
    "AUDIT_RETENTION_DAYS": 730,
    # Hourly and daily roll-ups of readings: two years of long-range charts and summaries.
    "ROLLUP_RETENTION_DAYS": 730,
    "SQLITE_BUSY_TIMEOUT_MS": 10000,
    # Behind a reverse proxy: how many proxies in front set X-Forwarded-For/-Proto/-Host
    # (Werkzeug's ProxyFix); 0 trusts none, so a client cannot fake its address.
    "PROXY_COUNT": 0,
    # A rate-limit store (Redis) that is down lets requests through, logged, rather than
    # refusing every login.
    "RATELIMIT_SWALLOW_ERRORS": True,
    # Languages the pages are offered in; the first is the fallback for browsers that ask for
    # none of them. Each needs a catalogue in portal/translations (English is the source).
    "LANGUAGES": ["en", "de", "fr"],
    # MQTT (MQTT.md): the broker the bridge (`flask mqtt run`) uses; unset = MQTT off.
    "MQTT_URL": None,  # mqtt://host:1883 or mqtts://host:8883
    "MQTT_USERNAME": None,  # the bridge's own login, with the dynamic-security admin role
    "MQTT_PASSWORD": None,
    "MQTT_TOPIC_PREFIX": "portal",
    # The bridge's MQTT client id (its persistent session); default portal-bridge-<host name>.
    # Two bridges must not share one.
    "MQTT_CLIENT_ID": None,
    # Email notifications: the SMTP server that takes them; unset host = no email.
    "SMTP_HOST": None,
    "SMTP_PORT": 25,
    "SMTP_USERNAME": None,  # with SMTP_PASSWORD: log in (after STARTTLS when that is on)
    "SMTP_PASSWORD": None,
    "SMTP_FROM": None,  # the sender address; required with SMTP_HOST
    "SMTP_STARTTLS": False,
}

INT_SETTINGS = (
    "MAX_CONTENT_LENGTH",
    "DEVICE_ONLINE_SECONDS",
    "COMMAND_LEASE_SECONDS",
    "COMMAND_MAX_ATTEMPTS",
    "COMMAND_DEFAULT_EXPIRES_IN",
    "TOKEN_TOUCH_SECONDS",
    "SESSION_IDLE_MINUTES",
    "SESSION_MAX_HOURS",
    "SCHEDULER_INTERVAL_SECONDS",
    "SQLITE_BUSY_TIMEOUT_MS",
)

# Whole numbers where 0 means "off" or "forever".
ZERO_OR_MORE_SETTINGS = ("LIVE_SECONDS",)

TRANSLATIONS = Path(__file__).parent / "translations"
SOURCE_LANGUAGE = "en"  # the language the portal is written in: it needs no catalogue


RATE_LIMIT_SETTINGS = ("LOGIN_LIMIT", "BAD_TOKEN_LIMIT")
# Days, 0 = forever; at most a century, so ``now - days`` stays a date.
RETENTION_SETTINGS = (
    "READINGS_RETENTION_DAYS",
    "COMMANDS_RETENTION_DAYS",
    "AUDIT_RETENTION_DAYS",
    "ROLLUP_RETENTION_DAYS",
)
MAX_RETENTION_DAYS = 36500
BOOLEAN_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class ConfigError(RuntimeError):
    """A setting has a value the portal cannot use; the message names the variable."""


def instance_path(overrides: Mapping[str, Any] | None = None) -> str | None:
    """The instance folder (settings file, SQLite database, generated secret key): the
    ``INSTANCE_PATH`` override, else ``PORTAL_INSTANCE_PATH``, else Flask's default (``instance/``
    beside a source checkout, ``<venv>/var/portal-instance`` for an installed package)."""
    return (overrides or {}).get("INSTANCE_PATH") or os.environ.get("PORTAL_INSTANCE_PATH") or None


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
        # Written whole under another name, then linked into place: processes starting at
        # once (workers, the scheduler) all end up reading the one key that won, never half.
        staged = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(staged, path)
        except FileExistsError:
            pass
        finally:
            staged.unlink()
    app.config["SECRET_KEY"] = path.read_text().strip()


def _validate(app: Flask) -> None:
    for names, least in ((INT_SETTINGS, 1), (ZERO_OR_MORE_SETTINGS, 0)):
        for name in names:
            value = app.config[name]
            try:
                app.config[name] = int(value)
            except (TypeError, ValueError):
                raise ConfigError(f"PORTAL_{name} must be an integer, got {value!r}") from None
            if app.config[name] < least:
                word = "positive" if least else "0 or more"
                raise ConfigError(f"PORTAL_{name} must be {word}, got {value!r}")
    for name in RETENTION_SETTINGS:
        app.config[name] = _retention_days(name, app.config[name])
    if app.config["SESSION_COOKIE_SAMESITE"] not in ("Lax", "Strict", "None"):
        raise ConfigError("PORTAL_SESSION_COOKIE_SAMESITE must be Lax, Strict or None")
    app.config["LANGUAGES"] = _languages(app.config["LANGUAGES"])
    proxies = app.config["PROXY_COUNT"]
    if isinstance(proxies, bool) or not isinstance(proxies, int) or not 0 <= proxies <= 10:
        raise ConfigError(
            f"PORTAL_PROXY_COUNT must be a whole number from 0 to 10, got {proxies!r}"
        )
    if app.config["REQUIRE_2FA"] not in ("none", "admin", "all"):
        raise ConfigError(
            f"PORTAL_REQUIRE_2FA must be none, admin or all, got {app.config['REQUIRE_2FA']!r}"
        )
    _mqtt(app)
    _smtp(app)
    for name in RATE_LIMIT_SETTINGS:
        value = app.config[name]
        try:
            parse_many(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"PORTAL_{name} must be a rate limit such as '10 per 15 minutes', got {value!r}"
            ) from None


def _retention_days(name: str, value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 0 <= value <= MAX_RETENTION_DAYS
    ):
        raise ConfigError(
            f"PORTAL_{name} must be a whole number of days from 0 (keep forever) to "
            f"{MAX_RETENTION_DAYS}, got {value!r}"
        )
    return value


def _languages(value: Any) -> list[str]:
    """A list of language codes, each with a catalogue (``PORTAL_LANGUAGES=en,de`` works too)."""
    codes = value.split(",") if isinstance(value, str) else value
    if not isinstance(codes, list | tuple) or not all(isinstance(c, str) for c in codes):
        raise ConfigError(f"PORTAL_LANGUAGES must be a list of language codes, got {value!r}")
    codes = [code.strip() for code in codes if code.strip()]
    if not codes:
        raise ConfigError("PORTAL_LANGUAGES must name at least one language")
    for code in codes:
        try:
            Locale.parse(code)
        except (UnknownLocaleError, ValueError):
            raise ConfigError(f"PORTAL_LANGUAGES: {code!r} is not a language code") from None
        catalogue = TRANSLATIONS / code / "LC_MESSAGES" / "messages.mo"
        if code != SOURCE_LANGUAGE and not catalogue.is_file():
            raise ConfigError(f"PORTAL_LANGUAGES: no translation for {code!r} in {TRANSLATIONS}")
    return codes


TOPIC_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}(/[A-Za-z0-9_.-]{1,64}){0,3}$")


def _mqtt(app: Flask) -> None:
    url = app.config["MQTT_URL"] or None
    app.config["MQTT_URL"] = url
    if url is not None:
        parts = urlsplit(str(url))
        try:
            valid = parts.scheme in ("mqtt", "mqtts") and bool(parts.hostname) and parts.port != 0
        except ValueError:  # a port that is not a number from 0 to 65535
            valid = False
        if not valid:
            raise ConfigError(
                f"PORTAL_MQTT_URL must look like mqtt://host:1883 or mqtts://host:8883, got {url!r}"
            )
    prefix = app.config["MQTT_TOPIC_PREFIX"]
    if not isinstance(prefix, str) or not TOPIC_PREFIX_RE.match(prefix):
        raise ConfigError(
            "PORTAL_MQTT_TOPIC_PREFIX must be 1-4 topic levels of letters, digits and _ . -"
            f" (e.g. portal), got {prefix!r}"
        )


def _smtp(app: Flask) -> None:
    config = app.config
    for name in ("SMTP_HOST", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_FROM"):
        value = config[name]
        if value is not None and not isinstance(value, str):
            value = str(value)  # the environment's JSON parsing made a number of it
        config[name] = value or None
    port = config["SMTP_PORT"]
    if isinstance(port, str) and port.strip().isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"PORTAL_SMTP_PORT must be a port number (1-65535), got {port!r}")
    config["SMTP_PORT"] = port
    starttls = config["SMTP_STARTTLS"]
    if isinstance(starttls, str) and starttls.strip().lower() in BOOLEAN_WORDS:
        starttls = BOOLEAN_WORDS[starttls.strip().lower()]
    if not isinstance(starttls, bool):
        raise ConfigError(f"PORTAL_SMTP_STARTTLS must be true or false, got {starttls!r}")
    config["SMTP_STARTTLS"] = starttls
    if config["SMTP_HOST"] and not config["SMTP_FROM"]:
        raise ConfigError("PORTAL_SMTP_FROM (the sender address) is needed with PORTAL_SMTP_HOST")
    if config["SMTP_FROM"] and "@" not in config["SMTP_FROM"]:
        raise ConfigError(f"PORTAL_SMTP_FROM must be an email address, got {config['SMTP_FROM']!r}")
    if bool(config["SMTP_USERNAME"]) != bool(config["SMTP_PASSWORD"]):
        raise ConfigError("PORTAL_SMTP_USERNAME and PORTAL_SMTP_PASSWORD go together")
