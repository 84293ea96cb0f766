"""Parts of pages that keep themselves up to date without a reload.

A page marks its live parts with ids and draws a poller (``live_poller``): an element that
htmx (vendored, ``portal/static/vendor/htmx``) makes ask the parts' URL every few seconds and
put each part of the answer in place of the element with its id (``hx-select-oob``). The
answer is the same templates the page drew, so there is one way to draw each part.

The poller sends the version (a hash) of what it shows; while nothing in the parts changed
the answer is ``204 No Content``, which htmx leaves alone: an idle page costs one small query
set and no DOM work, focus and text selection stay where they are. Polls do not keep a login
session alive (``portal/sessions.py``), and a page in a background tab does not poll
(``portal/static/live.js``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from flask import Response, current_app, make_response, redirect, request, url_for
from markupsafe import Markup

# The header that carries the version a poller shows, and that answers carry.
VERSION_HEADER = "X-Portal-Live-Version"


def is_live_poll() -> bool:
    """Whether this request is a poller's, not a person's (it does not count as activity)."""
    return VERSION_HEADER in request.headers


# A form's CSRF token is signed afresh with the time on every request, yet the one a page
# holds stays valid (WTF_CSRF_TIME_LIMIT is None): it is no change to what the part shows.
_CSRF_VALUE = re.compile(r'(name="csrf_token"[^>]*value=")[^"]*"')


def version_of(parts: Iterable[str]) -> str:
    digest = hashlib.blake2b(digest_size=12)
    for part in parts:
        digest.update(_CSRF_VALUE.sub(r'\1"', str(part)).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def live_poller(url: str, ids: Iterable[str], parts: Iterable[str] | None = None) -> Markup:
    """The element that keeps the parts with these ids up to date from ``url``. With
    ``parts`` (the page's own drawing of them) the first poll is a 204 when nothing moved.
    Nothing when live updates are off (``PORTAL_LIVE_SECONDS`` = 0)."""
    seconds = current_app.config["LIVE_SECONDS"]
    ids = list(ids)
    if not seconds or not ids:
        return Markup("")
    version = version_of(parts) if parts is not None else ""
    return Markup(
        '<div hidden data-live-poller data-live-version="%s" hx-get="%s" '
        'hx-trigger="every %ss, portal:refresh" hx-swap="none" hx-select-oob="%s"></div>'
    ) % (version, url, seconds, ",".join("#" + i for i in ids))


def live_answer(parts: list[str]) -> Response:
    """The parts for a poller, or 204 when they are what it already shows."""
    version = version_of(parts)
    if request.headers.get(VERSION_HEADER) == version:
        answer = make_response("", 204)
    else:
        answer = make_response("".join(parts))
    answer.headers[VERSION_HEADER] = version
    answer.headers["Cache-Control"] = "no-store"
    return answer


def login_redirect() -> Response:
    """Where a request without a live login goes: the login page, back here after. A poller
    gets 401 and tells htmx to open the login page for the page it sits on, so no login form
    is ever swapped into a page's part."""
    if request.headers.get("HX-Request") == "true":
        page = request.headers.get("HX-Current-URL", "")
        answer = make_response("", 401)
        answer.headers["HX-Redirect"] = url_for("auth.login", next=_local_path(page))
        return answer

    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _local_path(url: str) -> str:
    """The path and query of a URL on this site ("" for anything else)."""
    root = request.host_url.rstrip("/")
    if not url.startswith(root + "/"):
        return ""
    path = url[len(root) :]
    return path if path.startswith("/") and not path.startswith("//") else ""
