"""Audit entries: one per change, whichever surface made it."""

from __future__ import annotations

import contextvars
import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from portal.extensions import db
from portal.models import AuditEvent, User


@dataclass(frozen=True)
class Origin:
    via: str = "system"
    remote_addr: str = ""


# Set by each edge (a request hook, a CLI command) so services can say where a change came from
# without seeing HTTP.
NO_ORIGIN = Origin()
_origin: contextvars.ContextVar[Origin] = contextvars.ContextVar("audit_origin", default=NO_ORIGIN)

SECRET_FIELDS = frozenset({"password", "password_hash", "token", "token_hash"})


def set_origin(via: str, remote_addr: str = "") -> None:
    _origin.set(Origin(via=via, remote_addr=remote_addr or ""))


def jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list, str, int, float, bool)) or value is None:
        return value
    return str(value)


def snapshot(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: jsonable(getattr(obj, name)) for name in fields}


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """Fields whose values differ, as ``{field: [before, after]}``; secrets are masked."""
    changes: dict[str, list[Any]] = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old != new:
            if name in SECRET_FIELDS:
                old, new = "***" if old else None, "***"
            changes[name] = [old, new]
    return changes


def record(
    actor: User | None,
    action: str,
    obj: Any,
    changes: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit entry for ``action`` on ``obj`` to the session (the edge commits)."""
    return _add(
        actor,
        action,
        type(obj).__tablename__.rstrip("s"),
        str(obj.id),
        str(obj),
        changes,
    )


def record_login_attempt(action: str, username: str, user: User | None = None) -> AuditEvent:
    """Audit a login that did not open a session (``login_failed``, ``login_throttled``,
    ``second_factor_failed``), about a user who may not exist: the name tried is kept, with
    control characters (which PostgreSQL's text may not hold) shown as ``?``."""
    username = "".join(c if c.isprintable() else "?" for c in username[:64])
    return _add(
        user,
        action,
        "user",
        str(user.id) if user is not None else "",
        username,
        None,
        actor_name=username,
    )


def _add(
    actor: User | None,
    action: str,
    object_type: str,
    object_id: str,
    object_repr: str,
    changes: dict[str, Any] | None,
    actor_name: str | None = None,
) -> AuditEvent:
    origin = _origin.get()
    if actor_name is None:
        actor_name = actor.username if actor is not None else origin.via
    event = AuditEvent(
        actor_id=actor.id if actor is not None else None,
        actor_name=actor_name[:64],
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr[:200],
        changes=changes or {},
        via=origin.via,
        remote_addr=origin.remote_addr[:64],
    )
    db.session.add(event)
    return event
