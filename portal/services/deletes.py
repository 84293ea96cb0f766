"""What deleting an object takes with it, and deleting it so that each removed object is audited.

The tables cascade (``ondelete="CASCADE"``), and that stays as a safety net; but a delete made
here removes the dependents itself first, so the audit log and the answer name what went: each
schedule, rule and channel by name, the big tables (commands, readings, alerts, deliveries,
tokens) as one entry per kind with its count. The services' delete functions call ``remove``;
the admin's confirmation page and the API's delete preview call ``preview``; both start with
``check_delete``, so a preview refuses exactly what the delete would refuse.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, delete, func, or_, select

from portal.extensions import db
from portal.models import (
    Alert,
    Command,
    Device,
    NotificationChannel,
    NotificationDelivery,
    PersonalToken,
    Reading,
    Rule,
    Schedule,
    User,
)
from portal.services import audit
from portal.services.access import check_change, check_owned_change, require_admin
from portal.services.errors import Conflict

# A preview counts rows up to here and then says "at least": counting a busy device's millions
# of readings to the end would make the confirmation page as slow as the delete itself. The
# delete counts exactly (the DELETE statement's row count costs nothing extra).
COUNT_CAP = 10_000
# A preview (and a delete's answer) names at most this many objects of a kind; the count is
# still complete, and the audit log has an entry for each.
NAMED_LIMIT = 100


@dataclass(frozen=True)
class Named:
    id: int
    name: str


@dataclass(frozen=True)
class Removed:
    """The objects of one kind that go with a deleted object."""

    kind: str  # schedule, rule, channel (named); command, reading, alert, delivery, token
    count: int
    more: bool = False  # the count stopped at COUNT_CAP: there are more
    items: tuple[Named, ...] = ()  # named kinds only, at most NAMED_LIMIT


@dataclass(frozen=True)
class Deletion:
    """An object and what goes with it (to be deleted, or deleted)."""

    kind: str  # device, schedule, rule, channel, user
    id: int
    name: str
    dependents: tuple[Removed, ...]  # kinds with at least one object, named kinds first


@dataclass(frozen=True)
class Group:
    kind: str
    model: Any
    where: Callable[[Any], ColumnElement[bool]]
    named: bool = False
    audit_type: str = ""  # the audit log's object type for a counted kind


class _Rows:
    """Rows of one table removed together, as ``audit.record`` takes an object: the entry's
    object type comes from the class's ``__tablename__``, its id is empty, its name the text."""

    __tablename__ = ""
    id = ""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


@functools.cache
def _rows_type(audit_type: str) -> type[_Rows]:
    return type(f"Removed_{audit_type}", (_Rows,), {"__tablename__": audit_type})


def _device_rules(device: Device) -> Any:
    return select(Rule.id).where(Rule.device_id == device.id)


def _user_rules(user: User) -> Any:
    return select(Rule.id).where(Rule.owner_id == user.id)


def _user_channels(user: User) -> Any:
    return select(NotificationChannel.id).where(NotificationChannel.owner_id == user.id)


# What goes with each kind of object, in the order it is removed (rows that point at others
# first). A schedule takes nothing: its commands stay, no longer tied to it (SET NULL). A user
# who owns devices is not deleted at all (check_delete).
GROUPS: dict[type, tuple[Group, ...]] = {
    Device: (
        # A rule on this device raises alerts about it alone; the rule_id half makes sure.
        Group(
            "alert",
            Alert,
            lambda d: or_(Alert.device_id == d.id, Alert.rule_id.in_(_device_rules(d))),
            audit_type="alert",
        ),
        Group("command", Command, lambda d: Command.device_id == d.id, audit_type="command"),
        Group("reading", Reading, lambda d: Reading.device_id == d.id, audit_type="reading"),
        Group("schedule", Schedule, lambda d: Schedule.device_id == d.id, named=True),
        Group("rule", Rule, lambda d: Rule.device_id == d.id, named=True),
    ),
    Schedule: (),
    Rule: (Group("alert", Alert, lambda r: Alert.rule_id == r.id, audit_type="alert"),),
    NotificationChannel: (
        Group(
            "delivery",
            NotificationDelivery,
            lambda c: NotificationDelivery.channel_id == c.id,
            audit_type="notification_delivery",
        ),
    ),
    User: (
        Group("alert", Alert, lambda u: Alert.rule_id.in_(_user_rules(u)), audit_type="alert"),
        Group(
            "delivery",
            NotificationDelivery,
            lambda u: NotificationDelivery.channel_id.in_(_user_channels(u)),
            audit_type="notification_delivery",
        ),
        Group(
            "token",
            PersonalToken,
            lambda u: PersonalToken.user_id == u.id,
            audit_type="personal_token",
        ),
        Group("rule", Rule, lambda u: Rule.owner_id == u.id, named=True),
        Group(
            "channel",
            NotificationChannel,
            lambda u: NotificationChannel.owner_id == u.id,
            named=True,
        ),
    ),
}
KINDS = {
    Device: "device",
    Schedule: "schedule",
    Rule: "rule",
    NotificationChannel: "channel",
    User: "user",
}


def check_delete(actor: User | None, obj: Any) -> None:
    """Raise unless ``actor`` may delete ``obj`` (None: the system, which may delete anything
    that can be deleted): NotFound out of reach, Forbidden read-only, Conflict when the
    object cannot go (a user who owns devices, or oneself)."""
    if isinstance(obj, User):
        _check_user_delete(actor, obj)
    elif actor is None:
        return
    elif isinstance(obj, Device):
        check_change(actor, obj)
    elif isinstance(obj, Schedule):
        check_change(actor, obj.device)
    elif isinstance(obj, Rule):
        check_owned_change(actor, obj.owner_id, "rule")
    elif isinstance(obj, NotificationChannel):
        check_owned_change(actor, obj.owner_id, "channel")
    else:
        raise TypeError(f"{type(obj).__name__} is not deleted through services.deletes")


def _check_user_delete(actor: User | None, user: User) -> None:
    if actor is not None:
        require_admin(actor)
        if actor.id == user.id:
            raise Conflict("You cannot delete yourself.")
    owned = db.session.scalar(select(func.count()).where(Device.owner_id == user.id))
    if owned:
        raise Conflict(
            f"{user.username} owns {owned} device(s); reassign them or deactivate the user.",
            code="user_owns_devices",
        )


def preview(actor: User | None, obj: Any) -> Deletion:
    """What deleting ``obj`` would remove; nothing changes. Counts stop at ``COUNT_CAP``
    (``more`` says so). Raises as ``check_delete`` does."""
    check_delete(actor, obj)
    found = []
    for group in GROUPS[type(obj)]:
        where = group.where(obj)
        capped = select(group.model.id).where(where).limit(COUNT_CAP + 1).subquery()
        count = db.session.scalar(select(func.count()).select_from(capped)) or 0
        if not count:
            continue
        items: tuple[Named, ...] = ()
        if group.named:
            rows = db.session.execute(
                select(group.model.id, group.model.name)
                .where(where)
                .order_by(group.model.name, group.model.id)
                .limit(NAMED_LIMIT)
            )
            items = tuple(Named(key, name) for key, name in rows)
        found.append(Removed(group.kind, min(count, COUNT_CAP), count > COUNT_CAP, items))
    return _deletion(obj, found)


def remove(actor: User | None, obj: Any, changes: dict[str, Any]) -> Deletion:
    """Delete ``obj`` and everything that goes with it, auditing each: ``changes`` for ``obj``
    itself, each named dependent by its own entry, each counted kind as one entry with its
    count. Adds and flushes (the edge commits); the caller has run ``check_delete``."""
    _lock(obj)
    parent = f"{KINDS[type(obj)]} {obj.id} {obj}"
    counted, named = [], []
    for group in GROUPS[type(obj)]:
        if group.named:
            continue
        count = _delete_rows(group, obj)
        if count:
            counted.append(Removed(group.kind, count))
            audit.record(
                actor,
                "delete",
                _rows_type(group.audit_type)(f"{count} {group.kind}(s) of {parent}"),
                {"count": count, "deleted_with": parent},
            )
    for group in GROUPS[type(obj)]:
        if not group.named:
            continue
        rows = db.session.scalars(
            select(group.model).where(group.where(obj)).order_by(group.model.name, group.model.id)
        ).all()
        for row in rows:
            audit.record(actor, "delete", row, {"deleted_with": parent})
            db.session.delete(row)
        if rows:
            items = tuple(Named(row.id, row.name) for row in rows[:NAMED_LIMIT])
            named.append(Removed(group.kind, len(rows), False, items))
    db.session.flush()
    deletion = _deletion(obj, counted + named)
    # Forget collections loaded before (a user's tokens): their rows are gone already, and
    # the ORM would delete them again and warn that nothing matched.
    db.session.expire(obj)
    audit.record(actor, "delete", obj, changes)
    db.session.delete(obj)
    db.session.flush()
    return deletion


def _delete_rows(group: Group, obj: Any) -> int:
    """Delete a counted kind's rows in one statement; how many went. The session is not
    searched for them (``synchronize_session``): that could mean fetching millions of ids."""
    statement = delete(group.model).where(group.where(obj))
    result = db.session.execute(statement.execution_options(synchronize_session=False))
    return cast(CursorResult[Any], result).rowcount


def _lock(obj: Any) -> None:
    """Hold the object's row until the edge commits: on PostgreSQL a reading, command or
    schedule added for it meanwhile waits for its foreign key check and then fails, instead of
    slipping in after its kind was counted and going unaudited with the cascade. (SQLite
    writes one transaction at a time already.)"""
    model = type(obj)
    db.session.execute(select(model.id).where(model.id == obj.id).with_for_update())


def _deletion(obj: Any, found: list[Removed]) -> Deletion:
    ordered = sorted(found, key=lambda removed: not removed.items)
    return Deletion(KINDS[type(obj)], obj.id, str(obj), tuple(ordered))
