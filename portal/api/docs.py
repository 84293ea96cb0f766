"""``/api/v1/docs``: the OpenAPI document rendered for people by the vendored Swagger UI.

Public, like the document it renders. The page runs no inline script (``static/api_docs.js``
starts Swagger UI), so it keeps the strict Content-Security-Policy of every other page.
"""

from __future__ import annotations

from flask import render_template

from portal.api import bp
from portal.api.routing import REGISTRY, Endpoint

DOCS = Endpoint(
    path="/docs",
    method="GET",
    name="docs",
    summary="This document as a web page (HTML)",
    tag="meta",
    auth="public",
    responses={200: None},
    description="Swagger UI showing /api/v1/openapi.json; no credentials needed to read it.",
)


def docs():
    return render_template("api_docs.html")


# Declared like the JSON endpoints so the document lists every route it serves under /api/v1.
REGISTRY.append(DOCS)
bp.add_url_rule(DOCS.path, endpoint=DOCS.name, view_func=docs, methods=[DOCS.method])
