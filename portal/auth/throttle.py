"""Failed logins, counted per address and per user name (``PORTAL_LOGIN_LIMIT``): the password
step and the second step share these limits and their counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app, request

from portal.extensions import limiter


def _login_limit() -> str:
    return current_app.config["LOGIN_LIMIT"]


def _failed(response: Any) -> bool:
    # Only failed attempts count: a success is a redirect.
    return response.status_code != 302


def _address_key() -> str:
    return "login-addr:" + (request.remote_addr or "")


def user_key(username: str) -> str:
    """The per-user counting key for ``username`` (the same for both login steps)."""
    return "login-user:" + username.strip().lower()[:64]


def login_limits(username: Callable[[], str]) -> Callable[[Callable[..., Any]], Any]:
    """Limit a login view's failed POSTs per address and per the user name ``username()``
    returns for the request."""

    def decorate(view: Callable[..., Any]) -> Any:
        by_user = limiter.limit(
            _login_limit,
            methods=["POST"],
            deduct_when=_failed,
            key_func=lambda: user_key(username()),
        )
        by_address = limiter.limit(
            _login_limit, methods=["POST"], deduct_when=_failed, key_func=_address_key
        )
        return by_address(by_user(view))

    return decorate
