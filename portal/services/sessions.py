"""Login sessions kept on the server: start one at login, find the live one behind a cookie's
key, end one or all of a user's.

The cookie carries a random key; the database keeps only its SHA-256. A session opens nothing
once it has ended (logout, password change, revocation), has been idle longer than ``idle`` or
is older than ``max_age``, or its user is inactive, whatever the cookie says.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update

from portal.extensions import db
from portal.models import User, UserSession, utcnow
from portal.services import audit

KEY_BYTES = 32


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def start_session(user: User, remote_addr: str = "", user_agent: str = "") -> str:
    """Open a session for ``user`` (whose password, and second factor, were checked) and
    return the key for the cookie; the key itself is stored nowhere."""
    key = secrets.token_urlsafe(KEY_BYTES)
    db.session.add(
        UserSession(
            key_hash=key_hash(key),
            user_id=user.id,
            remote_addr=remote_addr[:64],
            user_agent=user_agent[:200],
        )
    )
    audit.record(user, "login", user)
    return key


def user_for_session(
    user_id: int,
    key: str,
    *,
    idle: timedelta,
    max_age: timedelta,
    touch_seconds: int,
    touch: bool = True,
    now: datetime | None = None,
) -> tuple[User | None, bool]:
    """The active user whose live session has this key, and whether its ``last_seen_at`` was
    moved (then the caller commits). Touched at most once per ``touch_seconds``, so a page view
    costs one indexed read and, now and then, one small write; never with ``touch`` false (a
    page's background poll is not activity)."""
    now = now or utcnow()
    row = db.session.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.key_hash == key_hash(key), UserSession.user_id == user_id)
    ).one_or_none()
    if row is None:
        return None, False
    user_session, user = row
    if user_session.ended_at is not None or not user.active:
        return None, False
    if now - user_session.last_seen_at > idle or now - user_session.created_at > max_age:
        return None, False
    if not touch or now - user_session.last_seen_at < timedelta(seconds=touch_seconds):
        return user, False
    db.session.execute(
        update(UserSession)
        .where(UserSession.id == user_session.id)
        .values(last_seen_at=now)
        .execution_options(synchronize_session=False)
    )
    return user, True


def end_session(key: str | None, reason: str = "logout") -> User | None:
    """End the session with this key (a logout); return its user, or None if there was none
    live. Ending an ended session changes nothing."""
    if not key:
        return None
    user_session = db.session.execute(
        select(UserSession).where(UserSession.key_hash == key_hash(key))
    ).scalar_one_or_none()
    if user_session is None or user_session.ended_at is not None:
        return None
    user_session.ended_at = utcnow()
    user_session.end_reason = reason
    audit.record(user_session.user, reason, user_session.user)
    return user_session.user


def end_user_sessions(
    actor: User | None, user: User, reason: str, keep_key: str | None = None
) -> int:
    """End every live session of ``user`` except the one with ``keep_key`` (the caller's own,
    after a password change); audit how many ended and why. Returns that number."""
    query = update(UserSession).where(
        UserSession.user_id == user.id, UserSession.ended_at.is_(None)
    )
    if keep_key:
        query = query.where(UserSession.key_hash != key_hash(keep_key))
    result = db.session.execute(
        query.values(ended_at=utcnow(), end_reason=reason).execution_options(
            synchronize_session=False
        )
    )
    ended = int(getattr(result, "rowcount", 0) or 0)
    if ended:
        audit.record(actor, "sessions_ended", user, {"reason": [None, reason], "ended": [0, ended]})
    return ended


def live_sessions(user: User, *, idle: timedelta, max_age: timedelta) -> list[UserSession]:
    """The user's sessions that still open something, newest first (for the account page)."""
    now = utcnow()
    return list(
        db.session.execute(
            select(UserSession)
            .where(
                UserSession.user_id == user.id,
                UserSession.ended_at.is_(None),
                UserSession.last_seen_at > now - idle,
                UserSession.created_at > now - max_age,
            )
            .order_by(UserSession.created_at.desc())
        ).scalars()
    )


def purge_sessions(before: datetime) -> int:
    """Delete sessions that ended, or were last seen, before ``before``; returns how many."""
    result = db.session.execute(
        UserSession.__table__.delete().where(
            (UserSession.ended_at < before) | (UserSession.last_seen_at < before)
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
