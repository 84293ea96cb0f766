"""Who is calling: a device (device token), a person (personal token or the login session).

Bearer requests are exempt from CSRF (a browser never adds the header by itself); a
session request that changes anything must carry ``X-CSRFToken``. Look-ups go by the stored
hash; ``last_seen_at``/``last_used_at`` are touched at most once per ``TOKEN_TOUCH_SECONDS``.
"""

from __future__ import annotations

import math
import time

from flask import current_app, request
from flask_login import current_user
from limits import parse

from portal.extensions import csrf, limiter
from portal.models import TokenScope, User
from portal.services.devices import DeviceRef, device_ref_for_token
from portal.services.errors import DomainError, Forbidden
from portal.services.tokens import DEVICE_PREFIX, PERSONAL_PREFIX, personal_token_for

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class NotAuthenticated(DomainError):
    """No credentials, or credentials that do not (or no longer) work: 401."""

    code = "not_authenticated"
    status = 401


class TooManyBadTokens(DomainError):
    """This address sent too many unknown or revoked tokens lately: 429."""

    code = "rate_limited"
    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many requests with a bad token; try again later.")
        self.retry_after = retry_after


def refuse_bad_token(message: str) -> NotAuthenticated:
    """Count a bad bearer token against the caller's address (``BAD_TOKEN_LIMIT``, shared
    through the limiter's storage, Redis when configured), and answer 401, or 429 once the
    address is over the limit. Good tokens never reach this, so they are never slowed."""
    limit = parse(current_app.config["BAD_TOKEN_LIMIT"])
    # The same prefix as the limiter's own keys, so portals sharing one Redis count apart.
    key = (
        current_app.config.get("RATELIMIT_KEY_PREFIX") or "",
        "bad-token",
        request.remote_addr or "",
    )
    try:
        allowed = limiter.limiter.hit(limit, *key)
        reset_at = limiter.limiter.get_window_stats(limit, *key).reset_time
    except Exception:  # the store (Redis) is away: still 401, as the login limiter fails open
        current_app.logger.warning("bad-token limiter store unavailable; not counting")
        allowed, reset_at = True, 0.0
    if not allowed:
        raise TooManyBadTokens(max(1, math.ceil(reset_at - time.time())))
    return NotAuthenticated(message, code="invalid_token")


def bearer_token() -> str | None:
    """The token in ``Authorization: Bearer …``; None without the header; 401 if malformed."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise NotAuthenticated("Use 'Authorization: Bearer <token>'.", code="invalid_token")
    return token


def _touch_seconds() -> int:
    return current_app.config["TOKEN_TOUCH_SECONDS"]


def authenticate_device() -> DeviceRef:
    """The enabled device whose token came with the request (its id), or 401."""
    token = bearer_token()
    if token is None:
        raise NotAuthenticated("A device token is required.")
    device = (
        device_ref_for_token(token, _touch_seconds()) if token.startswith(DEVICE_PREFIX) else None
    )
    if device is None:
        raise refuse_bad_token("The token is invalid, or the device is disabled.")
    return device


def authenticate_person() -> User:
    """The active user behind a personal token or the login session, or 401.

    ``personal_token_for`` commits its throttled touch of ``last_used_at``; that happens here,
    before the view has changed anything, so the view's own transaction starts clean.
    """
    token = bearer_token()
    if token is not None:
        row = (
            personal_token_for(token, _touch_seconds())
            if token.startswith(PERSONAL_PREFIX)
            else None
        )
        if row is None:
            raise refuse_bad_token(
                "The token is invalid, expired or revoked, or its user is inactive."
            )
        if row.scope is TokenScope.read and request.method not in SAFE_METHODS:
            raise Forbidden("This token may only read (scope 'read').", code="read_only_token")
        return row.user
    if not current_user.is_authenticated:
        raise NotAuthenticated("Log in, or send 'Authorization: Bearer <personal token>'.")
    if request.method not in SAFE_METHODS:
        csrf.protect()
    return current_user._get_current_object()
