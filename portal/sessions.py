"""The login session: Flask's signed cookie carries the key of a session kept on the server
(``portal/services/sessions.py``), and only a live one loads a user."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, Request, current_app, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from portal.admin.live import is_live_poll
from portal.extensions import db
from portal.models import User
from portal.services import sessions

# The cookie's field holding the server-side session's key.
SESSION_KEY = "_sk"


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's own session, except that a request without the cookie (every device call and
    most scripts) gets its empty session without first building the signer."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def load_user(user_id: str) -> User | None:
    """Flask-Login's user loader: the user of the live server-side session named by the
    cookie, or None (the request is anonymous: the login page, or 401 in the API)."""
    key = session.get(SESSION_KEY)
    if not user_id.isdigit() or not isinstance(key, str):
        return None
    config = current_app.config
    # A page's poller is not the person: it must not keep an idle session alive.
    user, touched = sessions.user_for_session(
        int(user_id),
        key,
        idle=timedelta(minutes=config["SESSION_IDLE_MINUTES"]),
        max_age=timedelta(hours=config["SESSION_MAX_HOURS"]),
        touch_seconds=config["TOKEN_TOUCH_SECONDS"],
        touch=not is_live_poll(),
    )
    if touched:
        # Loaded before the view changes anything, so this commits only the touch.
        db.session.commit()
    return user


def begin(user: User) -> None:
    """Start a server-side session for ``user`` and put its key in the cookie (replacing any
    earlier one: a key is never reused across logins)."""
    session[SESSION_KEY] = sessions.start_session(
        user, request.remote_addr or "", request.user_agent.string or ""
    )


def current_key() -> str | None:
    key = session.get(SESSION_KEY)
    return key if isinstance(key, str) else None


def current_key_hash() -> str | None:
    """The stored form of this browser's session key (to mark "this session" in a list)."""
    key = current_key()
    return sessions.key_hash(key) if key else None


def forget() -> None:
    """Drop the key from the cookie (after the server-side session was ended)."""
    session.pop(SESSION_KEY, None)
