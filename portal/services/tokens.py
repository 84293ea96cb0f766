"""Secrets shown once: device and personal tokens (random, stored only as a SHA-256 hash)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update

from portal.extensions import db
from portal.models import PersonalToken, TokenScope, User, utcnow
from portal.services import audit
from portal.services.access import require_admin
from portal.services.errors import NotFound, one_field

DEVICE_PREFIX = "pd_"
PERSONAL_PREFIX = "pp_"
TOKEN_BYTES = 32
MAX_EXPIRES_DAYS = 3650


def new_token(prefix: str) -> tuple[str, str, str]:
    """Return ``(token, hash, display_prefix)`` for a fresh random token of 32 bytes."""
    token = prefix + secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_token(token), token[: len(prefix) + 6]


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is safe and keeps every request cheap.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def create_personal_token(
    actor: User | None,
    user: User,
    label: str = "",
    *,
    expires_days: int | None = None,
    scope: str | TokenScope = TokenScope.full,
    now: datetime | None = None,
) -> tuple[PersonalToken, str]:
    """Create a personal token for ``user``; return it with the clear token (shown once).

    ``expires_days`` (1 to 3650, None for never) sets ``expires_at``; ``scope`` is ``full`` or
    ``read`` (GET only). An admin may make tokens for anyone, anyone else only for themselves.
    """
    if actor is not None and actor.id != user.id:
        require_admin(actor)
    label = (label or "").strip()
    if len(label) > 100:
        raise one_field("label", "At most 100 characters.")
    expires_at = None
    if expires_days is not None:
        if not isinstance(expires_days, int) or isinstance(expires_days, bool):
            raise one_field("expires_days", "A whole number of days.")
        if not 1 <= expires_days <= MAX_EXPIRES_DAYS:
            raise one_field("expires_days", f"From 1 to {MAX_EXPIRES_DAYS} days.")
        expires_at = (now or utcnow()) + timedelta(days=expires_days)
    try:
        scope = TokenScope(scope)
    except ValueError:
        raise one_field("scope", "One of full, read.") from None
    token, digest, prefix = new_token(PERSONAL_PREFIX)
    row = PersonalToken(
        user=user,
        label=label,
        token_hash=digest,
        token_prefix=prefix,
        expires_at=expires_at,
        scope=scope,
    )
    db.session.add(row)
    db.session.flush()
    audit.record(
        actor,
        "create",
        row,
        {
            "user": [None, user.username],
            "label": [None, label],
            "scope": [None, scope.value],
            "expires_at": [None, audit.jsonable(expires_at)],
        },
    )
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


def personal_token_for(
    token: str, touch_seconds: int = 60, now: datetime | None = None
) -> PersonalToken | None:
    """The live personal token (not revoked, not expired, its user active), or None.

    ``last_used_at`` is written at most once per ``touch_seconds`` per token, so a busy script
    does not turn every request into a write. A use after expiry is an audit event.
    """
    row = db.session.execute(
        select(PersonalToken).where(PersonalToken.token_hash == hash_token(token))
    ).scalar_one_or_none()
    if row is None or row.revoked_at is not None or not row.user.active:
        return None
    now = now or utcnow()
    if row.expires_at is not None and row.expires_at <= now:
        audit.record(row.user, "expired_token_used", row)
        db.session.commit()
        return None
    if row.last_used_at is None or now - row.last_used_at > timedelta(seconds=touch_seconds):
        touch(PersonalToken, row.id, now)
    return row


def touch(
    model: type[PersonalToken], row_id: int, now: datetime, column: str = "last_used_at"
) -> None:
    db.session.execute(update(model).where(model.id == row_id).values({column: now}))
    db.session.commit()
