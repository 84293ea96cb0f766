"""The JSON API at ``/api/v1``: devices with device tokens, people with personal tokens or the
login session. ``init_api(app)`` registers the blueprint and its error handling."""

from __future__ import annotations

from flask import Blueprint, Flask

from portal.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def init_api(app: Flask) -> None:
    # Importing the endpoint modules declares their routes on ``bp`` (once per process).
    from portal.api import (  # noqa: F401
        alerts,
        channels,
        commands,
        device,
        devices,
        docs,
        openapi,
        rollups,
        rules,
        schedules,
    )
    from portal.api.errors import register_error_handlers

    # Bearer requests need no CSRF token; session writes are checked in api/auth.py instead.
    csrf.exempt(bp)
    register_error_handlers(app)
    app.register_blueprint(bp)
