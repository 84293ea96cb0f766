"""Two-factor login: TOTP (RFC 6238: 30 s steps, 6 digits, one step either side) through pyotp,
enrolment confirmed by a code, ten single-use recovery codes kept as hashes, no code used twice.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from datetime import datetime

import pyotp
import segno
from sqlalchemy import delete, func, select

from portal.extensions import db
from portal.models import RecoveryCode, Role, User, utcnow
from portal.services import audit
from portal.services.errors import Conflict, InvalidInput
from portal.services.sessions import end_user_sessions

RECOVERY_CODES = 10
# The name authenticator apps show beside the account.
ISSUER = "Portal"
# Accept the code of the step before and after the current one (clock drift, slow typing).
VALID_WINDOW = 1
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


class Requirement(enum.StrEnum):
    """``PORTAL_REQUIRE_2FA``: whom the second factor is required of."""

    none = "none"
    admin = "admin"
    all = "all"


def is_required(user: User, requirement: Requirement) -> bool:
    """Whether ``requirement`` covers ``user`` (then an unenrolled user must enrol first)."""
    if requirement is Requirement.all:
        return True
    return requirement is Requirement.admin and user.role is Role.admin


def begin_enrolment(user: User) -> str:
    """Give ``user`` a new secret to enrol with (replacing one not yet confirmed) and return
    it. Raises Conflict when a second factor is already on: remove it first."""
    if user.has_second_factor:
        raise Conflict("Two-factor login is already on.", code="second_factor_on")
    if not user.totp_secret:
        user.totp_secret = pyotp.random_base32()
    return user.totp_secret


def provisioning_uri(user: User, secret: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The enrolment QR code as inline SVG markup (no image request, nothing for CSP to block)."""
    return str(segno.make(uri, error="m").svg_inline(scale=5, border=2, dark="#000", light="#fff"))


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code is ``code`` within the window, or None."""
    code = (code or "").strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def confirm_enrolment(user: User, code: str, now: datetime | None = None) -> list[str]:
    """Turn the second factor on if ``code`` matches the pending secret; return the recovery
    codes, in clear this once. Raises InvalidInput naming ``code`` otherwise."""
    if user.has_second_factor or not user.totp_secret:
        raise Conflict("Start the enrolment first.", code="no_enrolment")
    step = _matching_step(user.totp_secret, code, now or utcnow())
    if step is None:
        raise InvalidInput(fields={"code": "This code does not match; try the next one."})
    user.totp_enabled_at = now or utcnow()
    user.totp_last_step = step
    codes = _new_recovery_codes(user)
    audit.record(user, "second_factor_on", user)
    return codes


def _hash_code(code: str) -> str:
    return hashlib.sha256(code.replace("-", "").lower().encode()).hexdigest()


def _new_recovery_codes(user: User) -> list[str]:
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
        db.session.add(RecoveryCode(user_id=user.id, code_hash=_hash_code(raw)))
    return codes


def check_second_factor(user: User, code: str, now: datetime | None = None) -> bool:
    """Whether ``code`` is a TOTP code not used before or an unused recovery code; either is
    then spent (a TOTP step once accepted never is again, so a code cannot be replayed)."""
    if not user.has_second_factor or not user.totp_secret:
        return False
    step = _matching_step(user.totp_secret, code, now or utcnow())
    if step is not None:
        if user.totp_last_step is not None and step <= user.totp_last_step:
            return False
        user.totp_last_step = step
        return True
    recovery = db.session.execute(
        select(RecoveryCode).where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _hash_code((code or "").strip()),
            RecoveryCode.used_at.is_(None),
        )
    ).scalar_one_or_none()
    if recovery is None:
        return False
    recovery.used_at = now or utcnow()
    audit.record(user, "recovery_code_used", user)
    return True


def remaining_recovery_codes(user: User) -> int:
    return (
        db.session.scalar(
            select(func.count()).where(
                RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
            )
        )
        or 0
    )


def remove_second_factor(actor: User | None, user: User, reason: str = "second_factor_off") -> None:
    """Turn the second factor off and forget its secret and recovery codes. When someone else
    does it (an admin, the CLI's ``reset-2fa``), every session of the user ends too."""
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    audit.record(actor, reason, user)
    if actor is None or actor.id != user.id:
        end_user_sessions(actor, user, "second_factor_reset")
