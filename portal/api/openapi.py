"""The OpenAPI 3.1 document, generated from the route registry and the pydantic schemas.

Nothing here is written by hand but the security schemes and the status texts: every path,
parameter, body and answer comes from ``routing.REGISTRY`` and ``schemas``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, RootModel
from pydantic.json_schema import models_json_schema

from portal.api.routing import REGISTRY, Endpoint, route
from portal.api.schemas import MAX_ID, ErrorOut

PREFIX = "/api/v1"
REF = "#/components/schemas/{model}"
STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No content",
    400: "Malformed JSON or CSRF failure",
    401: "No or bad credentials",
    403: "Visible but read-only for this role",
    404: "Absent or out of reach",
    409: "State conflict",
    413: "Body too large",
    415: "Body is not application/json",
    422: "Bad values; `fields` names each one",
    503: "Database unavailable, or read-only for a write",
    507: "The server's disk is full",
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again; nothing was stored.",
        "schema": {"type": "integer", "minimum": 0},
    }
}
# The document's tags, in this order; an endpoint names one as ``tag``.
TAGS = {
    "device": "What devices call, with their device token.",
    "devices": "Devices, their tokens, readings and commands.",
    "schedules": "Commands sent on a schedule (cron, interval, once, sun).",
    "commands": "Commands across devices.",
    "rules": "What the portal watches for: thresholds, silence, failed commands.",
    "alerts": "What the rules noticed: active, acknowledged, resolved.",
    "channels": "Where notifications of alerts go: webhooks and email.",
    "health": "Whether the portal and its database answer.",
    "meta": "This document.",
}
SECURITY = {
    "device": [{"deviceToken": []}],
    "person": [{"personalToken": []}, {"session": []}],
    "public": [],
}


class OpenApiDocument(RootModel[dict[str, Any]]):
    """An OpenAPI 3.1 document."""


class Health(BaseModel):
    status: str


# /healthz lives in its own blueprint; it is part of the contract, so the document lists it.
HEALTH = Endpoint(
    path="/healthz",
    method="GET",
    name="healthz",
    summary="Database check",
    tag="health",
    auth="public",
    responses={200: Health, 503: Health},
)

_document: dict[str, Any] | None = None


def document() -> dict[str, Any]:
    """The document (built once per process: the registry is fixed after import)."""
    global _document
    if _document is None:
        _document = build_document()
    return _document


def _models(endpoints: list[Endpoint]) -> list[tuple[type[BaseModel], str]]:
    seen: dict[tuple[type[BaseModel], str], None] = {(ErrorOut, "serialization"): None}
    for ep in endpoints:
        if ep.body is not None:
            seen[(ep.body, "validation")] = None
        for model in ep.responses.values():
            if model is not None:
                seen[(model, "serialization")] = None
    return list(seen)


def build_document() -> dict[str, Any]:
    endpoints = [*REGISTRY, HEALTH]
    schemas, defs = models_json_schema(_models(endpoints), ref_template=REF)
    components = defs.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        full = ep.path if ep.path.startswith("/healthz") else PREFIX + ep.path
        paths.setdefault(full, {})[ep.method.lower()] = _operation(ep, schemas, components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Portal API",
            "version": "1.0.0",
            "description": "Devices report readings and take commands; people and "
            "scripts manage devices, schedules, commands, rules, alerts and notification "
            "channels.",
        },
        "tags": _tags(endpoints),
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "deviceToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A device token (pd_…), for /api/v1/device/…",
                },
                "personalToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal token (pp_…).",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "session",
                    "description": "The login session; writes need X-CSRFToken.",
                },
            },
        },
    }


def _tags(endpoints: list[Endpoint]) -> list[dict[str, str]]:
    used = {ep.tag for ep in endpoints}
    known = [{"name": name, "description": text} for name, text in TAGS.items() if name in used]
    return known + [{"name": name} for name in sorted(used - set(TAGS))]


def _ref(model: type[BaseModel], mode: str, schemas: dict) -> dict[str, Any]:
    return schemas[(model, mode)]


def _operation(ep: Endpoint, schemas: dict, components: dict) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": ep.name,
        "summary": ep.summary,
        "tags": [ep.tag],
        "security": SECURITY[ep.auth],
        "parameters": _parameters(ep, components),
    }
    if ep.description:
        op["description"] = ep.description
    if ep.body is not None:
        op["requestBody"] = {
            "required": ep.body_required,
            "content": {"application/json": {"schema": _ref(ep.body, "validation", schemas)}},
        }
    responses: dict[str, Any] = {}
    for status, model in ep.responses.items():
        responses[str(status)] = {"description": STATUS_TEXT.get(status, "OK")}
        if model is not None:
            responses[str(status)]["content"] = {
                "application/json": {"schema": _ref(model, "serialization", schemas)}
            }
    error = {"application/json": {"schema": _ref(ErrorOut, "serialization", schemas)}}
    for status in _error_statuses(ep):
        responses[str(status)] = {"description": STATUS_TEXT[status], "content": error}
        if status in (503, 507):
            responses[str(status)]["headers"] = RETRY_AFTER
    op["responses"] = responses
    return op


def _error_statuses(ep: Endpoint) -> list[int]:
    statuses = set(ep.errors)
    if ep.auth != "public":
        statuses.add(401)
    if ep.query is not None or "{" in ep.path or ep.body is not None:
        statuses.add(422)
    if "{" in ep.path:
        statuses.add(404)
    if ep.body is not None:
        statuses.update((400, 413, 415))
    if ep.auth == "person" and ep.method != "GET":
        statuses.update((400, 403))
    if ep.idempotent:
        statuses.add(409)
    if ep.auth != "public":
        # Authenticating reads the database and may write (a token's throttled touch), so
        # any of these may meet a database that refuses work (api/errors.py).
        statuses.update((503, 507))
    return sorted(statuses)


def _parameters(ep: Endpoint, components: dict) -> list[dict[str, Any]]:
    params = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        }
        for name in re.findall(r"{(\w+)}", ep.path)
    ]
    if ep.query is not None:
        schema = ep.query.model_json_schema(ref_template=REF)
        required = set(schema.get("required", ()))
        for name, prop in schema["properties"].items():
            params.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "schema": _query_schema(prop),
                }
            )
        for name, sub in schema.get("$defs", {}).items():
            components.setdefault(name, sub)
    if ep.idempotent:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Retries with the same key within 24 h get the first "
                "answer; the same key with another body is 409.",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 128,
                    "pattern": "^[\\x20-\\x7e]+$",
                },
            }
        )
    return params


def _query_schema(prop: dict[str, Any]) -> dict[str, Any]:
    """A query value is absent rather than null: drop the null branch and a null default."""
    prop = {k: v for k, v in prop.items() if k != "title" and not (k == "default" and v is None)}
    branches = [b for b in prop.get("anyOf", ()) if b != {"type": "null"}]
    if len(branches) == 1:
        del prop["anyOf"]
        prop.update(branches[0])
    return prop


@route(
    "/openapi.json",
    auth="public",
    summary="This document",
    tag="meta",
    responses={200: OpenApiDocument},
)
def openapi_json():
    """The OpenAPI 3.1 document of this API."""
    return document()
