"""Who is calling: a device (device token), a person (personal token or the login session).

Bearer requests are exempt from CSRF (a browser never adds the header by itself); a
session request that changes anything must carry ``X-CSRFToken``. Look-ups go by the stored
hash; ``last_seen_at``/``last_used_at`` are touched at most once per ``TOKEN_TOUCH_SECONDS``.
"""

from __future__ import annotations

from flask import current_app, request
from flask_login import current_user

from portal.extensions import csrf
from portal.models import User
from portal.services.devices import DeviceRef, device_ref_for_token
from portal.services.errors import DomainError
from portal.services.tokens import DEVICE_PREFIX, PERSONAL_PREFIX, user_for_token

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class NotAuthenticated(DomainError):
    """No credentials, or credentials that do not (or no longer) work: 401."""

    code = "not_authenticated"
    status = 401


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
        raise NotAuthenticated(
            "The token is invalid, or the device is disabled.", code="invalid_token"
        )
    return device


def authenticate_person() -> User:
    """The active user behind a personal token or the login session, or 401.

    ``user_for_token`` commits its throttled touch of ``last_used_at``; that happens here,
    before the view has changed anything, so the view's own transaction starts clean.
    """
    token = bearer_token()
    if token is not None:
        user = (
            user_for_token(token, _touch_seconds()) if token.startswith(PERSONAL_PREFIX) else None
        )
        if user is None:
            raise NotAuthenticated(
                "The token is invalid or revoked, or its user is inactive.", code="invalid_token"
            )
        return user
    if not current_user.is_authenticated:
        raise NotAuthenticated("Log in, or send 'Authorization: Bearer <personal token>'.")
    if request.method not in SAFE_METHODS:
        csrf.protect()
    return current_user._get_current_object()
