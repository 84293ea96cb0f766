"""Secrets shown once: device and personal tokens (random, stored only as a SHA-256 hash)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update

from portal.extensions import db
from portal.models import PersonalToken, User, utcnow
from portal.services import audit
from portal.services.access import require_admin
from portal.services.errors import NotFound, one_field

DEVICE_PREFIX = "pd_"
PERSONAL_PREFIX = "pp_"
TOKEN_BYTES = 32


def new_token(prefix: str) -> tuple[str, str, str]:
    """Return ``(token, hash, display_prefix)`` for a fresh random token of 32 bytes."""
    token = prefix + secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_token(token), token[: len(prefix) + 6]


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is safe and keeps every request cheap.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def create_personal_token(
    actor: User | None, user: User, label: str = ""
) -> tuple[PersonalToken, str]:
    """Create a personal token for ``user``; return it with the clear token (shown once)."""
    if actor is not None:
        require_admin(actor)
    label = (label or "").strip()
    if len(label) > 100:
        raise one_field("label", "At most 100 characters.")
    token, digest, prefix = new_token(PERSONAL_PREFIX)
    row = PersonalToken(user=user, label=label, token_hash=digest, token_prefix=prefix)
    db.session.add(row)
    db.session.flush()
    audit.record(actor, "create", row, {"user": [None, user.username], "label": [None, label]})
    return row, token


def revoke_personal_token(actor: User | None, token: PersonalToken) -> None:
    """Revoke at once; revoking twice is harmless."""
    if actor is not None:
        require_admin(actor)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(actor, "revoke", token)


def get_personal_token(actor: User, token_id: int) -> PersonalToken:
    require_admin(actor)
    row = db.session.get(PersonalToken, token_id)
    if row is None:
        raise NotFound("No such token.")
    return row


def user_for_token(token: str, touch_seconds: int = 60) -> User | None:
    """The active user behind a live personal token, or None.

    ``last_used_at`` is written at most once per ``touch_seconds`` per token, so a busy script
    does not turn every request into a write.
    """
    row = db.session.execute(
        select(PersonalToken).where(PersonalToken.token_hash == hash_token(token))
    ).scalar_one_or_none()
    if row is None or row.revoked_at is not None or not row.user.active:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > timedelta(seconds=touch_seconds):
        touch(PersonalToken, row.id, now)
    return row.user


def touch(model, row_id: int, now: datetime, column: str = "last_used_at") -> None:
    db.session.execute(update(model).where(model.id == row_id).values({column: now}))
    db.session.commit()
