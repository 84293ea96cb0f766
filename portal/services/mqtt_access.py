"""Devices' MQTT logins, kept in step with the portal through the broker's dynamic security.

A device logs in as ``dev-<id>`` with its token as password and client id ``dev-<id>``; its own
role ``dev-<id>`` lets it publish to ``<prefix>/dev-<id>/up/#`` and subscribe to
``<prefix>/dev-<id>/down/#`` and nothing else.

Every change that concerns a login (a device created, its token rotated, it being enabled,
disabled or deleted) writes a ``MqttCredentialChange`` row in the same transaction
(``note_change``). The bridge (or ``flask mqtt sync``) applies them with ``apply_changes``: it
reads what the portal holds *now* and makes the broker agree, then deletes the rows. So a change
is applied at least once and never forgotten while the broker is away, and applying one twice
does no harm. The one secret kept, a new token the broker has not taken yet, is encrypted with a
key derived from the portal's secret key and deleted with its row.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any, Protocol

from cryptography.fernet import InvalidToken
from sqlalchemy import delete, func, select, text, update

from portal.extensions import db
from portal.models import Device, MqttCredentialChange
from portal.services import secret_box
from portal.services.wakeup import wake_bridge

log = logging.getLogger(__name__)

IN_STEP = "in_step"
PENDING = "pending"
_CHANGES = MqttCredentialChange.__table__


class BrokerError(Exception):
    """The broker could not be reached, or refused a dynamic-security command."""


class DynamicSecurity(Protocol):
    """What ``apply_changes`` needs of a broker connection (``portal.mqtt.dynsec``)."""

    def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send dynamic-security commands; return one response per command, in order."""
        ...

    def clear_retained(self, topic: str) -> None: ...


def username(device_id: int) -> str:
    return f"dev-{device_id}"


def topic_root(prefix: str, device_id: int) -> str:
    return f"{prefix}/{username(device_id)}"


# What secret_box derives the key of the new passwords from (kept until the broker has them).
SEAL = "portal mqtt credentials"


def note_change(device_id: int, token: str | None = None) -> None:
    """Record, in the caller's transaction, that the device's login must be brought in step;
    ``token`` is its new password (kept encrypted until the broker has it)."""
    secret = secret_box.fernet(SEAL).encrypt(token.encode()) if token is not None else None
    db.session.add(MqttCredentialChange(device_id=device_id, secret=secret))
    db.session.flush()
    wake_bridge()


def pending_devices(device_ids: Iterable[int]) -> set[int]:
    """Which of these devices have a change the broker has not taken yet."""
    ids = list(device_ids)
    if not ids:
        return set()
    query = select(_CHANGES.c.device_id).where(_CHANGES.c.device_id.in_(ids)).distinct()
    return set(db.session.execute(query).scalars())


def state(device_id: int) -> str:
    return PENDING if pending_devices([device_id]) else IN_STEP


def has_changes() -> bool:
    return db.session.execute(select(_CHANGES.c.id).limit(1)).first() is not None


def device_acls(prefix: str, device_id: int) -> list[dict[str, Any]]:
    root = topic_root(prefix, device_id)
    return [
        {"acltype": "publishClientSend", "topic": f"{root}/up/#", "allow": True},
        {"acltype": "subscribePattern", "topic": f"{root}/down/#", "allow": True},
    ]


def _commands_for(
    prefix: str, device_id: int, enabled: bool | None, password: str | None
) -> list[dict[str, Any]]:
    """The dynamic-security commands that make the broker agree with the portal about one
    device (``enabled`` None: it is deleted). Each is safe to repeat: "already exists" and
    "not found" answers are expected."""
    name = username(device_id)
    if enabled is None:
        return [
            {"command": "deleteClient", "username": name},
            {"command": "deleteRole", "rolename": name},
        ]
    commands: list[dict[str, Any]] = [
        {"command": "createRole", "rolename": name, "acls": device_acls(prefix, device_id)}
    ]
    if password is not None:
        commands += [
            {
                "command": "createClient",
                "username": name,
                "password": password,
                "clientid": name,
                "roles": [{"rolename": name}],
            },
            # When it existed already: the new password (which drops an open connection).
            {"command": "setClientPassword", "username": name, "password": password},
        ]
    commands.append({"command": "enableClient" if enabled else "disableClient", "username": name})
    return commands


# Answers that mean the broker already agrees.
_HARMLESS = ("already exists", "not found")


def _check(responses: list[dict[str, Any]], device_id: int, has_password: bool) -> None:
    for response in responses:
        error = response.get("error")
        if not error:
            continue
        text = str(error).lower()
        if any(word in text for word in _HARMLESS):
            if (
                response.get("command") in ("enableClient", "disableClient")
                and "not found" in text
                and not has_password
            ):
                log.warning(
                    "device %s has no MQTT login at the broker; rotate its token to give it one",
                    device_id,
                )
            continue
        raise BrokerError(f"{response.get('command')}: {error}")


def apply_changes(broker: DynamicSecurity, prefix: str, limit: int = 100) -> int:
    """Bring the broker in step for up to ``limit`` devices with pending changes; return how
    many devices were put right. Stops at the first broker error (the rows stay for later)."""
    device_ids = (
        db.session.execute(
            select(_CHANGES.c.device_id)
            .group_by(_CHANGES.c.device_id)
            .order_by(func.min(_CHANGES.c.id))
            .limit(limit)
        )
        .scalars()
        .all()
    )
    db.session.commit()
    return sum(_apply_one(broker, prefix, device_id) for device_id in device_ids)


# PostgreSQL advisory locks of this kind: (this number, a device id).
_LOCK_SPACE = 0x6D717474  # "mqtt"


def _apply_one(broker: DynamicSecurity, prefix: str, device_id: int) -> bool:
    """Make the broker agree with the portal about one device, then forget its change rows.

    On PostgreSQL the device is locked first, so a second bridge (or ``flask mqtt sync``) waits
    and then finds the rows gone or newer: the broker never ends with an older state than the
    portal's. (SQLite is not locked here: its one write lock would hold up every writer while the
    broker answers; run one bridge on SQLite.)
    """
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:space, :id)"),
            {"space": _LOCK_SPACE, "id": device_id},
        )
    changes = connection.execute(
        select(_CHANGES.c.id, _CHANGES.c.secret)
        .where(_CHANGES.c.device_id == device_id)
        .order_by(_CHANGES.c.id)
    ).all()
    if not changes:
        db.session.commit()
        return False
    device = db.session.get(Device, device_id, populate_existing=True)
    secrets = [row.secret for row in changes if row.secret is not None]
    password = None
    if secrets:
        try:
            password = secret_box.fernet(SEAL).decrypt(secrets[-1]).decode()
        except InvalidToken:
            log.error(
                "device %s: its new MQTT password cannot be decrypted (the secret key changed?); "
                "its MQTT login stays disabled until its token is rotated",
                device_id,
            )
    undecryptable = bool(secrets) and password is None
    try:
        if device is None:
            forget_login(broker, username(device_id), prefix)
        else:
            enabled = device.enabled and not undecryptable
            if password is not None or not enabled:
                _say_offline(broker, prefix, device_id)
            _check(
                broker.run(_commands_for(prefix, device_id, enabled, password)),
                device_id,
                password is not None,
            )
    except BrokerError as exc:
        db.session.rollback()
        db.session.execute(
            update(_CHANGES)
            .where(_CHANGES.c.device_id == device_id)
            .values(attempts=_CHANGES.c.attempts + 1, last_error=str(exc)[:500])
        )
        db.session.commit()
        raise
    db.session.execute(delete(_CHANGES).where(_CHANGES.c.id.in_([row.id for row in changes])))
    db.session.commit()
    return True


def _say_offline(broker: DynamicSecurity, prefix: str, device_id: int) -> None:
    """The device's open connection is about to be dropped (new password, disabled), and a
    login the broker drops sends no will: mark it offline here and at the broker, so no command
    is pushed to nobody and a reconnecting bridge does not read "online" back."""
    broker.clear_retained(f"{topic_root(prefix, device_id)}/up/status")
    db.session.execute(
        update(Device.__table__)
        .where(Device.__table__.c.id == device_id)
        .values(mqtt_online=False, updated_at=Device.__table__.c.updated_at)
    )


def ensure_bridge_role(broker: DynamicSecurity, prefix: str, bridge_user: str) -> bool:
    """Let the bridge's own login publish to the devices' ``down`` topics (the admin role that
    ``mosquitto_ctrl dynsec init`` makes may only read them). True when it could already.

    Mosquitto drops every connection of a login whose roles change, the asking one included
    (it answers "Internal error" then), so after a False the caller reconnects once.
    """
    role = "portal-bridge"
    (found,) = broker.run([{"command": "getClient", "username": bridge_user}])
    roles = found.get("data", {}).get("client", {}).get("roles", [])
    if any(isinstance(r, dict) and r.get("rolename") == role for r in roles):
        return True
    acls = [
        {"acltype": kind, "topic": f"{prefix}/#", "allow": True}
        for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")
    ]
    _check(broker.run([{"command": "createRole", "rolename": role, "acls": acls}]), 0, True)
    log.info("giving the bridge's login %r the role %r (it reconnects once)", bridge_user, role)
    with contextlib.suppress(BrokerError):
        broker.run([{"command": "addClientRole", "username": bridge_user, "rolename": role}])
    return False


def unknown_logins(broker: DynamicSecurity) -> tuple[list[str], list[int]]:
    """``dev-<id>`` logins at the broker with no device here, and devices with no login there."""
    (answer,) = broker.run([{"command": "listClients", "verbose": False}])
    if answer.get("error"):
        raise BrokerError(f"listClients: {answer['error']}")
    names = set(answer.get("data", {}).get("clients", []))
    device_ids = set(db.session.execute(select(Device.id)).scalars())
    orphans = sorted(
        n
        for n in names
        if n.startswith("dev-") and n[4:].isdigit() and int(n[4:]) not in device_ids
    )
    missing = sorted(i for i in device_ids if username(i) not in names)
    return orphans, missing


def forget_login(broker: DynamicSecurity, name: str, prefix: str) -> None:
    """Remove a ``dev-<id>`` login (and its role and retained status) of a deleted device."""
    device_id = int(name.removeprefix("dev-"))
    _check(broker.run(_commands_for(prefix, device_id, None, None)), device_id, False)
    broker.clear_retained(f"{topic_root(prefix, device_id)}/up/status")
