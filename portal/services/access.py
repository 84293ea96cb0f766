"""Reach: which devices (and what hangs off them) a user may see or change.

Every list and look-up in the API, the admin and the CLI builds on these queries, so the rule
lives here once. An object out of reach is "not found", never "forbidden".
"""

from __future__ import annotations

from typing import TypeVarTuple

from sqlalchemy import Select, SQLColumnExpression, false, select

from portal.extensions import db
from portal.models import Device, Role, User
from portal.services.errors import Forbidden, NotFound

Ts = TypeVarTuple("Ts")


def sees_all(user: User) -> bool:
    return user.role in (Role.admin, Role.viewer)


def can_write(user: User) -> bool:
    return user.role in (Role.admin, Role.operator)


def visible_device_ids(user: User) -> Select[int] | None:
    """A subquery of the device ids the user may see, or None when they see every device."""
    if sees_all(user):
        return None
    return select(Device.id).where(Device.owner_id == user.id)


def scope(query: Select[*Ts], user: User, device_column: SQLColumnExpression[int]) -> Select[*Ts]:
    """Limit ``query`` to rows whose ``device_column`` is a device the user may see."""
    device_ids = visible_device_ids(user)
    if device_ids is None:
        return query
    return query.where(device_column.in_(device_ids))


def device_query_for(user: User, *, for_change: bool = False) -> Select[Device]:
    """Devices the user may see (or, with ``for_change``, change)."""
    query = select(Device)
    if for_change and user.role is Role.viewer:
        return query.where(false())
    if user.role is Role.operator:
        query = query.where(Device.owner_id == user.id)
    return query


def may_change_owned(user: User, owner_id: int) -> bool:
    """Whether ``user`` may change an object owned by ``owner_id`` (a device, a channel)."""
    return user.role is Role.admin or (user.role is Role.operator and owner_id == user.id)


def may_see_owned(user: User, owner_id: int) -> bool:
    return sees_all(user) or owner_id == user.id


def check_owned_change(user: User, owner_id: int, what: str) -> None:
    """Raise if ``user`` may not change an object of ``owner_id``: 404 out of reach (``No such
    <what>.``), 403 read-only."""
    if may_change_owned(user, owner_id):
        return
    if may_see_owned(user, owner_id):
        raise Forbidden("You may read this object but not change it.")
    raise NotFound(f"No such {what}.")


def may_change_device(user: User, device: Device) -> bool:
    return may_change_owned(user, device.owner_id)


def may_see_device(user: User, device: Device) -> bool:
    return may_see_owned(user, device.owner_id)


def check_change(user: User, device: Device) -> None:
    """Raise if ``user`` may not change ``device``: 404 out of reach, 403 read-only."""
    check_owned_change(user, device.owner_id, "device")


def get_device_for(user: User, device_id: int, *, for_change: bool = False) -> Device:
    """Return the device if the user may see it (and change it, with ``for_change``).

    Raises NotFound when absent or out of reach, Forbidden when visible but read-only.
    """
    device = db.session.get(Device, device_id)
    if device is None or not may_see_device(user, device):
        raise NotFound("No such device.")
    if for_change:
        check_change(user, device)
    return device


def require_admin(user: User) -> None:
    if user.role is not Role.admin:
        raise NotFound("Not found.")


def require_writer(user: User) -> None:
    if not can_write(user):
        raise Forbidden("Your role may read but not change anything.")
