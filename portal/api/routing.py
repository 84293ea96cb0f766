"""Declaring an endpoint once: who may call it, what it takes and what it answers.

``@route`` binds the view to the blueprint, authenticates the caller, parses the query string
and body through their schemas, replays ``Idempotency-Key`` requests, turns the answer into
JSON, commits, and records the endpoint in ``REGISTRY`` for the OpenAPI document.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson
from flask import Response, request
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import UnsupportedMediaType

from portal.api import bp
from portal.api.auth import authenticate_device, authenticate_person
from portal.api.errors import JSON_OPTIONS
from portal.api.schemas import MAX_ID
from portal.extensions import db, limiter
from portal.models import utcnow
from portal.services import idempotency
from portal.services.errors import DomainError, InvalidInput, NotFound
from portal.services.readings import METRIC_HELP, METRIC_RE, UNIT_HELP, UNIT_RE

Auth = Literal["device", "person", "public"]
FRIENDLY = {
    "extra_forbidden": "Unknown field.",
    "missing": "This field is required.",
}
# The services' own words for the schemas' patterns, not pydantic's "should match pattern …".
PATTERN_HELP = {METRIC_RE.pattern: METRIC_HELP, UNIT_RE.pattern: UNIT_HELP}


class InvalidJson(DomainError):
    code = "invalid_json"
    status = 400


@dataclass(frozen=True)
class Endpoint:
    path: str
    method: str
    name: str
    summary: str
    tag: str
    auth: Auth
    responses: dict[int, type[BaseModel] | None]
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    idempotent: bool = False
    description: str = ""
    errors: tuple[int, ...] = field(default=())


REGISTRY: list[Endpoint] = []


def route(
    path: str,
    method: str = "GET",
    *,
    auth: Auth = "person",
    summary: str,
    tag: str,
    responses: dict[int, type[BaseModel] | None],
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    query: type[BaseModel] | None = None,
    idempotent: bool = False,
    errors: tuple[int, ...] = (),
) -> Callable:
    """Register ``view`` at ``path``; it is called with the path's values plus ``device`` or
    ``user`` (the caller), ``query`` and ``body`` (parsed models) as it declares."""

    def decorate(view: Callable) -> Callable:
        endpoint = Endpoint(
            path=path,
            method=method,
            name=view.__name__,
            summary=summary,
            tag=tag,
            auth=auth,
            responses=responses,
            body=body,
            body_required=body_required,
            query=query,
            idempotent=idempotent,
            description=(view.__doc__ or "").strip(),
            errors=errors,
        )
        REGISTRY.append(endpoint)

        @functools.wraps(view)
        def handle(**path_values: Any) -> Response:
            return _handle(endpoint, view, path_values)

        rule = path.replace("{", "<int:").replace("}", ">")
        if auth == "device":
            # Device endpoints are never rate-limited: a fleet shares few addresses.
            handle = limiter.exempt(handle)
        bp.add_url_rule(rule, endpoint=view.__name__, view_func=handle, methods=[method])
        return view

    return decorate


def _handle(endpoint: Endpoint, view: Callable, path_values: dict[str, Any]) -> Response:
    for value in path_values.values():
        if not 1 <= value <= MAX_ID:
            raise NotFound("Not found.")
    kwargs = dict(path_values)
    caller_key = None
    if endpoint.auth == "device":
        kwargs["device"] = authenticate_device()
        caller_key = f"device:{kwargs['device'].id}"
    elif endpoint.auth == "person":
        kwargs["user"] = authenticate_person()
        caller_key = f"user:{kwargs['user'].id}"
    if endpoint.query is not None:
        kwargs["query"] = parse_query(endpoint.query)
    if endpoint.body is not None:
        kwargs["body"] = parse_body(endpoint.body, endpoint.body_required)
    key = request.headers.get("Idempotency-Key") if endpoint.idempotent else None
    if key is not None:
        return _idempotent(caller_key, key, lambda: view(**kwargs))
    status, payload = _render(view(**kwargs))
    if endpoint.method != "GET" or endpoint.auth == "device":
        db.session.commit()
    return _response(status, payload)


def parse_query(model: type[BaseModel]) -> BaseModel:
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise validation_failure(exc) from None


def parse_body(model: type[BaseModel], required: bool = True) -> BaseModel:
    """The body as ``model``: 413 too large, 415 not JSON, 400 malformed, 422 bad values."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise InvalidJson("A JSON body is required.")
        return model()
    if request.mimetype != "application/json":
        raise UnsupportedMediaType()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_failure(exc) from None


def validation_failure(exc: ValidationError) -> DomainError:
    """A schema's complaint as the API's error: 400 ``invalid_json`` or 422 naming each field."""
    fields: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        if error["type"] == "json_invalid":
            return InvalidJson("The body is not valid JSON: " + error["msg"].split(": ", 1)[-1])
        name = ".".join(str(part) for part in error["loc"]) or "body"
        message = FRIENDLY.get(error["type"], error["msg"])
        if error["type"] == "string_pattern_mismatch":
            message = PATTERN_HELP.get(error.get("ctx", {}).get("pattern"), message)
        fields.setdefault(name, message)
    return InvalidInput(fields=fields)


def _render(rv: Any) -> tuple[int, bytes | None]:
    status = 200
    if isinstance(rv, tuple):
        rv, status = rv
    if rv is None:
        return 204, None
    if isinstance(rv, BaseModel):
        return status, rv.model_dump_json().encode()
    return status, orjson.dumps(rv, option=JSON_OPTIONS)


def _response(status: int, payload: bytes | None, replayed: bool = False) -> Response:
    if payload is None:
        return Response(status=status)
    response = Response(payload, status, mimetype="application/json")
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _idempotent(caller: str, key: str, call: Callable[[], Any], retry: bool = True) -> Response:
    """Run ``call`` once per caller and key; a repeat gets the first answer, nothing new.

    The unique index on ``(caller, key)`` decides: the work and its record are stored together,
    and a second request with the key fails to store its record, rolls back and replays the
    first answer (or gets 409 for a different body). A new key, the common case, costs no
    look-up. A record past its 24 h window is dropped on the way and the work runs again.
    """
    idempotency.validate_key(key)
    request_hash = idempotency.fingerprint(
        request.method, request.path, request.get_data(cache=True)
    )
    now = utcnow()
    try:
        status, payload = _render(call())
    except DomainError:
        # The work failed this time (a changed body, a device deleted since): a repeated key
        # still gets its first answer, or 409 for a different request, before this error.
        first = _first_answer(caller, key, request_hash, now)
        if first is not None:
            return first
        raise
    try:
        if 200 <= status < 300:
            body = orjson.loads(payload) if payload is not None else None
            idempotency.remember(caller, key, request_hash, status, body, now)
        db.session.commit()
        return _response(status, payload)
    except IntegrityError:
        first = _first_answer(caller, key, request_hash, now)
        if first is not None:
            return first
        if not retry:
            raise
    return _idempotent(caller, key, call, retry=False)


def _first_answer(caller: str, key: str, request_hash: str, now: datetime) -> Response | None:
    """After this request's work is rolled back: the key's first answer replayed, or None when
    the key has no live record (raises Conflict for a different request)."""
    db.session.rollback()
    replay = idempotency.check_replay(caller, key, request_hash, now)
    db.session.commit()  # check_replay drops a record past its window
    return None if replay is None else _replayed(replay)


def _replayed(replay: idempotency.Replay) -> Response:
    payload = None if replay.body is None else orjson.dumps(replay.body, option=JSON_OPTIONS)
    return _response(replay.status, payload, replayed=True)


def patch_fields(
    body: BaseModel, not_null: tuple[str, ...], unchanged_if_null: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The fields a PATCH sent: InvalidInput naming each of ``not_null`` sent as null, and
    those of ``unchanged_if_null`` sent as null left out (they mean "no change")."""
    fields = body.model_dump(exclude_unset=True)
    nulls = {
        name: "May not be null." for name in not_null if name in fields and fields[name] is None
    }
    if nulls:
        raise InvalidInput(fields=nulls)
    return {
        name: value
        for name, value in fields.items()
        if not (name in unchanged_if_null and value is None)
    }
