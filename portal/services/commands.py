"""Commands: sending them to devices and cancelling them (the device side lands with the API)."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from portal.extensions import db
from portal.models import Command, CommandSource, CommandStatus, Device, User, utcnow
from portal.services import audit
from portal.services.access import check_change, get_device_for, may_see_device
from portal.services.errors import Conflict, InvalidInput, NotFound

ACTION_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_EXPIRES_IN = 30 * 24 * 3600
COMMAND_FIELDS = ("device_id", "action", "payload", "status", "expires_at")


def validate_action(action: Any, field: str = "action") -> str:
    if not isinstance(action, str) or not ACTION_RE.match(action):
        raise InvalidInput(fields={field: "1-64 characters: letters, digits and _ . : - "
                                          "(e.g. relay.on)."})
    return action


def validate_payload(payload: Any, field: str = "payload") -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise InvalidInput(fields={field: "A JSON object, e.g. {\"seconds\": 30}."})
    return payload


def validate_expires_in(expires_in: Any, field: str = "expires_in") -> int:
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or not (
        1 <= expires_in <= MAX_EXPIRES_IN
    ):
        raise InvalidInput(fields={field: f"Whole seconds from 1 to {MAX_EXPIRES_IN}."})
    return expires_in


def enqueue_command(actor: User | None, device: Device | int, action: str,
                    payload: dict[str, Any] | None = None, expires_in: int = 3600) -> Command:
    """Queue a command for a device the actor may change.

    Raises NotFound (out of reach), Forbidden (viewer) or InvalidInput naming each bad field.
    """
    if isinstance(device, int):
        if actor is None:
            found = db.session.get(Device, device)
            if found is None:
                raise NotFound("No such device.")
            device = found
        else:
            device = get_device_for(actor, device, for_change=True)
    elif actor is not None:
        check_change(actor, device)
    errors: dict[str, str] = {}
    for name, check, value in (("action", validate_action, action),
                               ("payload", validate_payload, payload),
                               ("expires_in", validate_expires_in, expires_in)):
        try:
            check(value)
        except InvalidInput as exc:
            errors.update(exc.fields)
    if errors:
        raise InvalidInput(fields=errors)
    now = utcnow()
    command = Command(device=device, action=action, payload=payload or {},
                      status=CommandStatus.queued, source=CommandSource.person,
                      created_by=actor, created_at=now,
                      expires_at=now + timedelta(seconds=expires_in))
    db.session.add(command)
    db.session.flush()
    audit.record(actor, "create", command, audit.diff({}, audit.snapshot(command, COMMAND_FIELDS)))
    return command


def get_command_for(user: User, command_id: int) -> Command:
    command = db.session.get(Command, command_id)
    if command is None or not may_see_device(user, command.device):
        raise NotFound("No such command.")
    return command


def cancel_command(actor: User | None, command: Command) -> Command:
    """Cancel a queued or delivered command; any other status is a Conflict."""
    if actor is not None:
        check_change(actor, command.device)
    if not command.status.is_open:
        raise Conflict(f"Command {command.id} is {command.status.value}; only queued or "
                       "delivered commands can be cancelled.", code="not_cancellable")
    before = command.status.value
    command.status = CommandStatus.cancelled
    command.finished_at = utcnow()
    audit.record(actor, "cancel", command, {"status": [before, "cancelled"]})
    return command
