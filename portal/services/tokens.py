"""Secrets shown once: device and personal tokens (random, stored only as a SHA-256 hash)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from portal.extensions import db
from portal.models import PersonalToken, Role, TokenScope, User, utcnow
from portal.services import audit
from portal.services.access import require_admin
from portal.services.errors import Conflict, NotFound, one_field

DEVICE_PREFIX = "pd_"
PERSONAL_PREFIX = "pp_"
TOKEN_BYTES = 32
MAX_EXPIRES_DAYS = 3650
# Live (unrevoked) personal tokens per user: self-service must not grow the table unbounded.
MAX_LIVE_TOKENS = 50
MAX_ROW_ID = 2**31 - 1  # the largest id an INTEGER primary key holds


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
    ``read`` (GET only), and only ``read`` for a viewer's token unless ``actor`` is None (the
    CLI). An admin may make tokens for anyone, anyone else only for themselves. Raises
    ``InvalidInput`` naming the bad field, ``Conflict`` past ``MAX_LIVE_TOKENS`` live tokens.
    """
    if actor is not None and actor.id != user.id:
        require_admin(actor)
    label = (label or "").strip()
    if len(label) > 100:
        raise one_field("label", "At most 100 characters.")
    if "\x00" in label:  # PostgreSQL refuses NUL in text
        raise one_field("label", "NUL characters are not allowed.")
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
    # A viewer's full token would start writing the day the viewer became an operator.
    if actor is not None and scope not in token_scopes_for(user):
        raise one_field("scope", "A viewer's token may only read.")
    if _live_token_count(user) >= MAX_LIVE_TOKENS:
        raise Conflict(f"At most {MAX_LIVE_TOKENS} live tokens per user: revoke one first.")
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


def token_scopes_for(user: User) -> tuple[TokenScope, ...]:
    """The scopes a token of ``user`` may have, the widest first."""
    if user.role is Role.viewer:
        return (TokenScope.read,)
    return (TokenScope.full, TokenScope.read)


def _live_token_count(user: User) -> int:
    return db.session.execute(
        select(func.count())
        .select_from(PersonalToken)
        .where(PersonalToken.user_id == user.id, PersonalToken.revoked_at.is_(None))
    ).scalar_one()


def revoke_personal_token(actor: User | None, token: PersonalToken) -> None:
    """Revoke at once; revoking twice is harmless. Admins revoke any token, others their own
    (another user's token is ``NotFound``)."""
    if actor is not None and actor.id != token.user_id:
        require_admin(actor)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(actor, "revoke", token)


def get_personal_token(actor: User, token_id: int) -> PersonalToken:
    """The token ``token_id`` if ``actor`` may see it (an admin: any; others: their own).

    Raises ``NotFound`` when it is absent or out of reach.
    """
    if not 1 <= token_id <= MAX_ROW_ID:  # PostgreSQL would refuse the comparison itself
        raise NotFound("No such token.")
    row = db.session.get(PersonalToken, token_id)
    if row is None or (row.user_id != actor.id and actor.role is not Role.admin):
        raise NotFound("No such token.")
    return row


def own_personal_tokens(user: User) -> list[PersonalToken]:
    """``user``'s unrevoked personal tokens (expired ones included), newest first."""
    return list(
        db.session.scalars(
            select(PersonalToken)
            .where(PersonalToken.user_id == user.id, PersonalToken.revoked_at.is_(None))
            .order_by(PersonalToken.created_at.desc(), PersonalToken.id.desc())
        )
    )


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
