"""Devices: creating, changing, deleting, their tokens, and knowing a device by its token."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm.attributes import set_committed_value

from portal.extensions import db
from portal.models import Device, Role, User, utcnow
from portal.services import audit, deletes, mqtt_access, retention
from portal.services.access import check_change, require_writer
from portal.services.errors import Conflict, InvalidInput
from portal.services.tokens import DEVICE_PREFIX, hash_token, new_token
from portal.services.users import resolve_owner

KIND_RE = re.compile(r"^[a-z0-9_.-]{1,32}$")
KINDS = ("raspberry_pi", "arduino", "esp32", "esp8266", "pico", "generic")
DEVICE_FIELDS = (
    "name",
    "kind",
    "location",
    "description",
    "enabled",
    "owner_id",
    "readings_retention_days",
)
LIMITS = {"name": 100, "location": 200, "description": 5000}


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for name, value in fields.items():
        if name in LIMITS:
            value = "" if value is None else str(value).strip()
            if len(value) > LIMITS[name]:
                errors[name] = f"At most {LIMITS[name]} characters."
            elif name == "name" and not value:
                errors[name] = "A name is required."
        elif name == "kind":
            value = (value or "generic").strip().lower()
            if not KIND_RE.match(value):
                errors[name] = "1-32 characters: a-z, 0-9, _ . - (e.g. esp32, raspberry_pi)."
        elif name == "enabled":
            value = bool(value)
        elif name == "readings_retention_days":
            try:
                value = retention.check_days(value)
            except ValueError as exc:
                errors[name] = str(exc)
        clean[name] = value
    if errors:
        raise InvalidInput(fields=errors)
    return clean


def _check_name_free(name: str, device_id: int | None = None) -> None:
    taken = db.session.execute(select(Device.id).where(Device.name == name)).scalar()
    if taken is not None and taken != device_id:
        raise Conflict(
            f"A device named {name!r} already exists.",
            code="name_taken",
            fields={"name": "This name is taken."},
        )


def create_device(
    actor: User | None,
    name: str,
    *,
    owner: User | str | None = None,
    kind: str = "generic",
    location: str = "",
    description: str = "",
    enabled: bool = True,
    readings_retention_days: int | None = None,
) -> tuple[Device, str]:
    """Create a device; return it with its clear token (shown once).

    ``readings_retention_days``: None = the installation's default, 0 = keep forever.
    ``actor`` None is the shell. Raises Forbidden for viewers, Conflict for a taken name.
    """
    if actor is not None:
        require_writer(actor)
    fields = _clean(
        {
            "name": name,
            "kind": kind,
            "location": location,
            "description": description,
            "enabled": enabled,
            "readings_retention_days": readings_retention_days,
        }
    )
    owner_user = resolve_owner(actor, owner, "devices")
    _check_name_free(fields["name"])
    token, digest, prefix = new_token(DEVICE_PREFIX)
    device = Device(owner=owner_user, token_hash=digest, token_prefix=prefix, **fields)
    db.session.add(device)
    db.session.flush()
    mqtt_access.note_change(device.id, token)
    audit.record(actor, "create", device, audit.diff({}, audit.snapshot(device, DEVICE_FIELDS)))
    return device, token


def update_device(actor: User | None, device: Device, **fields: Any) -> Device:
    """Change a device's name, kind, location, description, enabled flag, readings retention
    (None = the installation's default) or (admin) owner."""
    if actor is not None:
        check_change(actor, device)
    unknown = set(fields) - {
        "name",
        "kind",
        "location",
        "description",
        "enabled",
        "readings_retention_days",
        "owner",
    }
    if unknown:
        raise InvalidInput(fields=dict.fromkeys(sorted(unknown), "Unknown field."))
    before = audit.snapshot(device, DEVICE_FIELDS)
    owner = fields.pop("owner", None)
    fields = _clean(fields)
    if "name" in fields:
        _check_name_free(fields["name"], device.id)
    if owner is not None:
        if actor is not None and actor.role is not Role.admin:
            raise InvalidInput(fields={"owner": "Only an admin may give a device away."})
        device.owner = resolve_owner(actor, owner, "devices")
    for name, value in fields.items():
        setattr(device, name, value)
    db.session.flush()
    changes = audit.diff(before, audit.snapshot(device, DEVICE_FIELDS))
    if "enabled" in changes:
        mqtt_access.note_change(device.id)
    if changes:
        audit.record(actor, "update", device, changes)
    return device


def delete_device(actor: User | None, device: Device) -> deletes.Deletion:
    """Delete a device with its schedules, rules, alerts, commands and readings, each audited
    (``services.deletes``); return what went."""
    deletes.check_delete(actor, device)
    mqtt_access.note_change(device.id)
    return deletes.remove(actor, device, audit.diff(audit.snapshot(device, DEVICE_FIELDS), {}))


def rotate_device_token(actor: User | None, device: Device) -> str:
    """Give the device a new token and return it (shown once); the old one dies at once."""
    if actor is not None:
        check_change(actor, device)
    token, digest, prefix = new_token(DEVICE_PREFIX)
    device.token_hash, device.token_prefix = digest, prefix
    mqtt_access.note_change(device.id, token)
    audit.record(actor, "rotate_token", device, {"token": ["***", "***"]})
    return token


class DeviceRef(NamedTuple):
    """Just enough of a device for its own requests: the device's hot path loads no ORM object."""

    id: int
    last_seen_at: datetime | None


_DEVICES = Device.__table__
_BY_TOKEN = select(
    _DEVICES.c.id, _DEVICES.c.enabled, _DEVICES.c.last_seen_at, _DEVICES.c.http_seen_at
).where(_DEVICES.c.token_hash == bindparam("token_hash"))
_TOUCH = (
    update(_DEVICES)
    .where(_DEVICES.c.id == bindparam("device_id"))
    .values(
        last_seen_at=bindparam("seen_at"),
        http_seen_at=bindparam("seen_at"),
        updated_at=_DEVICES.c.updated_at,
    )
)


def device_ref_for_token(token: str, touch_seconds: int = 60) -> DeviceRef | None:
    """The enabled device behind ``token`` (its id), or None.

    ``last_seen_at`` is written at most once per ``touch_seconds``: a board polling every
    second must not make every poll a write. ``updated_at`` is left alone.
    """
    connection = db.session.connection()
    row = connection.execute(_BY_TOKEN, {"token_hash": hash_token(token)}).first()
    if row is None or not row.enabled:
        return None
    now = utcnow()
    # Throttled on http_seen_at: a device that also speaks MQTT keeps last_seen_at fresh.
    if row.http_seen_at is None or now - row.http_seen_at > timedelta(seconds=touch_seconds):
        connection.execute(_TOUCH, {"device_id": row.id, "seen_at": now})
        return DeviceRef(row.id, now)
    return DeviceRef(row.id, row.last_seen_at)


def device_for_token(token: str, touch_seconds: int = 60) -> Device | None:
    """The enabled device behind ``token``, or None (``device_ref_for_token`` as a model)."""
    ref = device_ref_for_token(token, touch_seconds)
    if ref is None:
        return None
    device = db.session.get(Device, ref.id)
    if device is None:  # deleted since its token was looked up
        return None
    set_committed_value(device, "last_seen_at", ref.last_seen_at)
    return device


def record_heartbeat(
    device: Device | DeviceRef, firmware: str | None = None, now: datetime | None = None
) -> None:
    """Note that the device is alive now and, when it says, which firmware it runs.

    One UPDATE; ``updated_at`` is left alone (it tracks changes people make).
    Raises InvalidInput for a firmware string over 64 characters.
    """
    values: dict[str, Any] = {"last_seen_at": now or utcnow(), "updated_at": _DEVICES.c.updated_at}
    if firmware is not None:
        if len(firmware) > 64:
            raise InvalidInput(fields={"firmware": "At most 64 characters."})
        values["firmware"] = firmware
    db.session.connection().execute(
        update(_DEVICES).where(_DEVICES.c.id == device.id).values(**values)
    )
    if isinstance(device, Device):
        for name in ("last_seen_at", "firmware"):
            if name in values:
                set_committed_value(device, name, values[name])
