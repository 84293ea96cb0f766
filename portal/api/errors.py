"""The API's error body, and the handlers that give every failure under ``/api/`` that shape.

``{"error": {"code": "<snake_case>", "message": "<human text>", "fields": {...}}}`` with
``fields`` only for validation errors. No request under ``/api/`` ever gets an HTML page.
"""

from __future__ import annotations

import orjson
from flask import Flask, Response, current_app, request
from sqlalchemy.exc import DBAPIError
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


def error_response(
    status: int,
    code: str,
    message: str,
    fields: dict | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The one place an error body is built."""
    error: dict = {"code": code, "message": message}
    if fields is not None:
        error["fields"] = fields
    response = Response(
        orjson.dumps({"error": error}, option=JSON_OPTIONS), status, mimetype="application/json"
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
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
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


def database_error(exc: DBAPIError):
    """A lost database connection is 503 with ``Retry-After`` (the pool has already dropped
    it and its siblings, so a retry gets a fresh one); any other database error is a bug."""
    if not exc.connection_invalidated:
        return unexpected_error(exc)
    current_app.logger.warning(
        "database connection lost on %s %s: %s", request.method, request.path, exc.orig
    )
    _rollback()
    message = "The database connection was lost; try again."
    if not is_api_request():
        return ServiceUnavailable(message, retry_after=1)
    return error_response(503, "database_unavailable", message, headers={"Retry-After": "1"})


def _internal_error(_exc: Exception) -> Response:
    return error_response(500, "internal_error", "Something went wrong on the server.")


def register_error_handlers(app: Flask) -> None:
    # App-wide (each handler checks the path), because unknown routes and wrong methods never
    # reach the blueprint, and a blueprint takes no handlers once registered with an app.
    app.register_error_handler(DomainError, domain_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(DBAPIError, database_error)
    app.register_error_handler(Exception, unexpected_error)
