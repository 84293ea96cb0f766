"""People: creating them, their passwords and roles, and checking a login."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from portal.extensions import db
from portal.models import Role, User, utcnow
from portal.scheduling.timing import TimingError, validate_timezone
from portal.services import audit, deletes
from portal.services.access import require_admin
from portal.services.errors import Conflict, InvalidInput, NotFound
from portal.services.sessions import end_user_sessions

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
USER_FIELDS = ("username", "role", "active", "timezone", "locale")
# A hash to compare against when the user does not exist, so a failed login takes as long
# whether or not the name is known.
_DUMMY_HASH: dict[str, str] = {}


def hash_password(password: str) -> str:
    method = "scrypt"
    if has_app_context():
        method = current_app.config.get("PASSWORD_HASH_METHOD", method)
    return generate_password_hash(password, method=method)


def validate_username(username: str) -> str:
    username = (username or "").strip()
    if not USERNAME_RE.match(username):
        raise InvalidInput(fields={"username": "1-64 letters, digits or . _ @ - characters."})
    return username


def validate_password(password: str | None) -> str:
    if password is None or len(password) < MIN_PASSWORD:
        raise InvalidInput(fields={"password": f"At least {MIN_PASSWORD} characters."})
    if len(password) > 1024:
        raise InvalidInput(fields={"password": "At most 1024 characters."})
    return password


def parse_role(value: str | Role) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput(fields={"role": "One of admin, operator, viewer."}) from None


def find_user(username: str) -> User | None:
    return db.session.execute(select(User).where(User.username == username)).scalar_one_or_none()


def create_user(
    actor: User | None,
    username: str,
    password: str,
    role: str | Role = Role.viewer,
    active: bool = True,
) -> User:
    """Create a user; ``actor`` None means the shell (CLI). Raises Conflict on a taken name."""
    if actor is not None:
        require_admin(actor)
    username = validate_username(username)
    role = parse_role(role)
    validate_password(password)
    if find_user(username) is not None:
        raise Conflict(f"A user named {username!r} already exists.", code="username_taken")
    user = User(username=username, password_hash=hash_password(password), role=role, active=active)
    db.session.add(user)
    db.session.flush()
    audit.record(actor, "create", user, audit.diff({}, audit.snapshot(user, USER_FIELDS)))
    return user


def update_user(
    actor: User | None,
    user: User,
    *,
    password: str | None = None,
    languages: Collection[str] = (),
    **fields: Any,
) -> User:
    """Change role, active flag, timezone, language or password; audit what changed.

    A ``locale`` field must be one of ``languages``; empty or None follows the browser.
    """
    if actor is not None:
        require_admin(actor)
    before = audit.snapshot(user, USER_FIELDS)
    if "username" in fields:
        name = validate_username(fields.pop("username"))
        if name != user.username and find_user(name) is not None:
            raise Conflict(f"A user named {name!r} already exists.", code="username_taken")
        user.username = name
    if "role" in fields:
        user.role = parse_role(fields.pop("role"))
    if "active" in fields:
        user.active = bool(fields.pop("active"))
    if "timezone" in fields:
        try:
            user.timezone = validate_timezone(fields.pop("timezone"))
        except TimingError as exc:
            raise InvalidInput(fields={exc.field: exc.message}) from None
    if "locale" in fields:
        user.locale = validate_locale(fields.pop("locale"), languages)
    if (
        actor is not None
        and actor.id == user.id
        and (user.role is not Role.admin or not user.active)
    ):
        raise InvalidInput(fields={"role": "You cannot demote or deactivate yourself."})
    changes = audit.diff(before, audit.snapshot(user, USER_FIELDS))
    if password:
        user.password_hash = hash_password(validate_password(password))
        changes["password"] = ["***", "***"]
    if changes:
        audit.record(actor, "update", user, changes)
    reason = _session_ending_change(changes)
    if reason:
        end_user_sessions(actor, user, reason)
    return user


def _session_ending_change(changes: dict[str, Any]) -> str | None:
    """Why an admin's change ends every session of the user, if it does: a new password, a
    new role, or deactivation (SECURITY.md, Sessions)."""
    if "password" in changes:
        return "password_reset"
    if "active" in changes and not changes["active"][1]:
        return "deactivated"
    if "role" in changes:
        return "role_changed"
    return None


def delete_user(actor: User | None, user: User) -> deletes.Deletion:
    """Delete a user who owns no devices (deactivate instead to keep their devices), with
    their rules, channels and tokens, audited (``services.deletes``); return what went."""
    deletes.check_delete(actor, user)
    return deletes.remove(actor, user, audit.diff(audit.snapshot(user, USER_FIELDS), {}))


def get_user_for(actor: User, user_id: int) -> User:
    require_admin(actor)
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


def authenticate(username: str, password: str) -> User | None:
    """Return the active user with these credentials, or None (one answer for every failure)."""
    username = (username or "").strip()
    # A name no user can have (NUL, 10,000 characters) is not even looked up: PostgreSQL
    # refuses NUL in text, and the answer is the same "no" either way.
    user = find_user(username) if USERNAME_RE.match(username) else None
    if user is None:
        if "hash" not in _DUMMY_HASH:
            _DUMMY_HASH["hash"] = hash_password("not-a-password")
        check_password_hash(_DUMMY_HASH["hash"], password or "")
        return None
    if not check_password_hash(user.password_hash, password or "") or not user.active:
        return None
    user.last_login_at = utcnow()
    return user


def validate_locale(locale: str | None, languages: Collection[str]) -> str | None:
    """Return ``locale`` if it is one of ``languages``; empty or None (follow the browser) is None.

    Raises InvalidInput naming the ``locale`` field for any other value.
    """
    if not locale:
        return None
    if locale not in languages:
        choices = ", ".join(languages)
        raise InvalidInput(fields={"locale": f"One of {choices}, or empty to follow the browser."})
    return locale


def update_own_settings(
    user: User,
    *,
    timezone: str | None = None,
    locale: str | None = None,
    languages: Collection[str] = (),
    current_password: str | None = None,
    new_password: str | None = None,
    session_key: str | None = None,
) -> User:
    """Let a user change their own time zone and language, and their password given the
    current one.

    ``locale`` is one of ``languages``, or "" to follow the browser; None leaves it unchanged.
    """
    changes: dict[str, list[str | None]] = {}
    if timezone is not None and timezone != user.timezone:
        try:
            zone = validate_timezone(timezone)
        except TimingError as exc:
            raise InvalidInput(fields={exc.field: exc.message}) from None
        changes["timezone"] = [user.timezone, zone]
        user.timezone = zone
    if locale is not None:
        chosen = validate_locale(locale, languages)
        if chosen != user.locale:
            changes["locale"] = [user.locale, chosen]
            user.locale = chosen
    if new_password:
        if not check_password_hash(user.password_hash, current_password or ""):
            raise InvalidInput(fields={"current_password": "This is not your password."})
        user.password_hash = hash_password(validate_password(new_password))
        changes["password"] = ["***", "***"]
    if changes:
        audit.record(user, "update", user, changes)
    if new_password:
        # Every other session ends; the one that changed the password (``session_key``) stays.
        end_user_sessions(user, user, "password_changed", keep_key=session_key)
    return user


def resolve_owner(actor: User | None, owner: User | str | None, things: str) -> User:
    """Who owns a new (or given away) object of kind ``things`` (devices, channels): ``owner``
    (a user or a user name), else the actor. Operators own what they create; a viewer owns
    nothing. Raises InvalidInput on ``owner``."""
    if isinstance(owner, str):
        found = find_user(owner)
        if found is None:
            raise InvalidInput(fields={"owner": f"No user named {owner!r}."})
        owner = found
    if owner is None:
        if actor is None:
            raise InvalidInput(fields={"owner": "An owner is required."})
        return actor
    if actor is not None and actor.role is not Role.admin and owner.id != actor.id:
        raise InvalidInput(fields={"owner": f"Operators own the {things} they create."})
    if owner.role is Role.viewer:
        raise InvalidInput(fields={"owner": f"A viewer cannot own {things}."})
    return owner
