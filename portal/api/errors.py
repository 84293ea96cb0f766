"""The API's error body, and the handlers that give every failure under ``/api/`` that shape.

``{"error": {"code": "<snake_case>", "message": "<human text>", "fields": {...}}}`` with
``fields`` only for validation errors. No request under ``/api/`` ever gets an HTML page.
A database that refuses work (a full disk, a read-only file or server) is not a bug: it
answers 503 (507 for a full disk) with ``Retry-After``, on every page, API or not.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import orjson
from flask import Flask, Response, current_app, request
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry
from werkzeug.exceptions import HTTPException, ServiceUnavailable

from portal.extensions import db
from portal.services.errors import DomainError

JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC

# The contract's snake_case codes for the HTTP errors the API can raise itself.
HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}
MESSAGES = {
    404: "No such resource.",
    405: "This method is not allowed here.",
    413: "The request body is larger than the server accepts.",
    415: "Send the body as application/json.",
}


def error_body(code: str, message: str, fields: dict | None = None) -> dict[str, Any]:
    """The one place an error is described: ``{code, message[, fields]}`` (HTTP and MQTT)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if fields is not None:
        error["fields"] = fields
    return error


def error_response(
    status: int,
    code: str,
    message: str,
    fields: dict | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    response = Response(
        orjson.dumps({"error": error_body(code, message, fields)}, option=JSON_OPTIONS),
        status,
        mimetype="application/json",
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def is_api_request() -> bool:
    return request.path.startswith("/api/")


def _rollback() -> None:
    # The edge owns the transaction: nothing half-written survives an error.
    try:
        db.session.rollback()
    except Exception:
        current_app.logger.exception("rollback failed")


def domain_error(exc: DomainError):
    if not is_api_request():
        raise exc
    _rollback()
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return error_response(exc.status, exc.code, exc.message, exc.fields, headers=headers)


def http_error(exc: HTTPException):
    if not is_api_request():
        return exc
    _rollback()
    status = exc.code or 500
    if status >= 500:
        return _internal_error(exc)
    headers = {}
    if status == 405 and exc.valid_methods:
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    message = MESSAGES.get(status) or exc.description or exc.name
    return error_response(status, HTTP_CODES.get(status, "error"), message, headers=headers)


def unexpected_error(exc: Exception):
    """Last resort: log the bug and still answer JSON under ``/api/``."""
    if not is_api_request():
        raise exc
    current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
    _rollback()
    return _internal_error(exc)


@dataclass(frozen=True)
class Refusal:
    """A database that refuses the work for a reason of the machine, not of the code: the
    answer to give, and how long a client should wait before it tries again."""

    status: int
    code: str
    message: str
    retry_after: int


DISK_FULL = Refusal(
    507, "insufficient_storage", "The server's disk is full; nothing was changed.", 30
)
READ_ONLY = Refusal(
    503, "database_read_only", "The database accepts no changes now; nothing was changed.", 5
)
UNAVAILABLE = Refusal(
    503, "database_unavailable", "The database is unavailable; nothing was changed.", 5
)
# Another writer held SQLite's lock longer than the busy timeout: a retry soon will do.
BUSY = Refusal(503, "database_busy", "The database is busy; nothing was changed, try again.", 1)
# The pool has already dropped the connection and its siblings, so a retry gets a fresh one.
CONNECTION_LOST = Refusal(
    503, "database_unavailable", "The database connection was lost; try again.", 1
)

# By primary result code (the low byte of the extended code: SQLITE_IOERR_WRITE is an IOERR).
SQLITE_REFUSALS = {
    sqlite3.SQLITE_FULL: DISK_FULL,
    sqlite3.SQLITE_READONLY: READ_ONLY,
    sqlite3.SQLITE_IOERR: UNAVAILABLE,
    sqlite3.SQLITE_CANTOPEN: UNAVAILABLE,
    sqlite3.SQLITE_BUSY: BUSY,
    sqlite3.SQLITE_LOCKED: BUSY,
}
# By SQLSTATE; the rest of class 53 (out of memory, too many connections) is UNAVAILABLE.
POSTGRES_REFUSALS = {
    "53100": DISK_FULL,
    "25006": READ_ONLY,  # a hot standby, or default_transaction_read_only
    "57P01": CONNECTION_LOST,  # admin_shutdown: the server ended this session
    "57P02": CONNECTION_LOST,  # crash_shutdown
    "57P03": UNAVAILABLE,  # cannot_connect_now: starting up or shutting down
}


def refusal_for(exc: DBAPIError) -> Refusal | None:
    """What a database error means for the client, or None when it is a bug."""
    refusal = _driver_refusal(exc.orig)
    if refusal is None and exc.connection_invalidated:
        refusal = CONNECTION_LOST
    return refusal


def _driver_refusal(orig: BaseException | None) -> Refusal | None:
    # The driver's codes (sqlite3's ``sqlite_errorcode``, psycopg's ``sqlstate``), never the
    # message text, which changes with versions and locales.
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return SQLITE_REFUSALS.get(code & 0xFF)
    state = getattr(orig, "sqlstate", None)
    if state:
        return POSTGRES_REFUSALS.get(state) or (UNAVAILABLE if state[:2] == "53" else None)
    return None


def drop_read_only_connections(context: ExceptionContext) -> None:
    """An engine ``handle_error`` hook: a connection that met a read-only database is dropped
    with the rest of the pool instead of being pooled again.

    A PostgreSQL session keeps the ``default_transaction_read_only`` it started with (from
    ALTER DATABASE, or a standby's) for life, and SQLite keeps a file it opened read-only so:
    fresh connections see the database as it is now, so writes work again as soon as the
    database takes them, with no restart.
    """
    if _driver_refusal(context.original_exception) is READ_ONLY:
        context.is_disconnect = True


def pool_no_read_only_connection(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    """A pool ``checkin`` hook: a connection opened while the database refused writes (which
    may have only read since) is replaced at its next checkout, so that once the database
    takes writes again, the first write does not meet a read-only leftover."""
    if _read_only_session(dbapi_connection):
        record.invalidate(soft=True)


def _read_only_session(dbapi_connection: Any) -> bool:
    # portal.sqlite_writer's connections say so themselves; PostgreSQL (14 and later) reports
    # both settings to the client, so psycopg knows them without a round trip.
    if getattr(dbapi_connection, "read_only", False):
        return True
    info = getattr(dbapi_connection, "info", None)
    if info is None or getattr(dbapi_connection, "closed", True):
        return False
    status = info.parameter_status
    return "on" in (status("default_transaction_read_only"), status("in_hot_standby"))


def database_error(exc: DBAPIError):
    """A database that refuses work (a full disk, a read-only file or server, a lost
    connection) answers 503, or 507 for a full disk, with ``Retry-After`` and one warning
    line in the log; any other database error is a bug."""
    refusal = refusal_for(exc)
    if refusal is None:
        return unexpected_error(exc)
    _rollback()
    current_app.logger.warning(
        "database fault on %s %s: %s; answered %d %s, Retry-After %d",
        request.method,
        request.path,
        _describe(exc.orig),
        refusal.status,
        refusal.code,
        refusal.retry_after,
    )
    headers = {"Retry-After": str(refusal.retry_after)}
    if not is_api_request():
        return _refusal_page(refusal, headers)
    return error_response(refusal.status, refusal.code, refusal.message, headers=headers)


def _describe(orig: BaseException | None) -> str:
    """The driver's code and message on one line (a psycopg message can span several)."""
    name = getattr(orig, "sqlite_errorname", None) or getattr(orig, "sqlstate", None)
    text = " ".join(str(orig).split())
    return f"{name} {text}" if name else text


class InsufficientStorage(HTTPException):
    code = 507
    description = "The server's disk is full."


def _refusal_page(refusal: Refusal, headers: dict[str, str]) -> Response:
    # Werkzeug's plain page rather than the portal's layout: rendering the layout may read
    # the database (the user's language) that just failed.
    page = InsufficientStorage if refusal.status == 507 else ServiceUnavailable
    response = page(refusal.message + " Try again later.").get_response()
    response.headers.update(headers)
    return response


def _internal_error(_exc: Exception) -> Response:
    return error_response(500, "internal_error", "Something went wrong on the server.")


def register_error_handlers(app: Flask) -> None:
    # App-wide (each handler checks the path), because unknown routes and wrong methods never
    # reach the blueprint, and a blueprint takes no handlers once registered with an app.
    app.register_error_handler(DomainError, domain_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(DBAPIError, database_error)
    app.register_error_handler(Exception, unexpected_error)
