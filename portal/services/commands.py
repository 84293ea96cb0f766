"""Commands: sending, listing and cancelling them; a device's poll, its results; expiry.

Every status change that can race (two polls, a poll and a result, a result and a cancel, the
scheduler's expiry pass) is a conditional UPDATE on the status read, so exactly one side wins.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, TypeAlias, cast

from sqlalchemy import CursorResult, Row, Update, and_, bindparam, or_, select, update

from portal.extensions import db
from portal.models import Command, CommandSource, CommandStatus, Device, User, utcnow
from portal.services import alerts, audit
from portal.services.access import check_change, get_device_for, may_see_device, scope
from portal.services.devices import DeviceRef
from portal.services.errors import Conflict, InvalidInput, NotFound
from portal.services.wakeup import wake_bridge

ACTION_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_EXPIRES_IN = 30 * 24 * 3600
LEASE_SECONDS = 60
MAX_ATTEMPTS = 5
OPEN = (CommandStatus.queued, CommandStatus.delivered)
RESULT_STATUSES = (CommandStatus.succeeded, CommandStatus.failed)
# An ORM UPDATE that leaves loaded objects alone: the rows it touches are re-read when needed.
_PLAIN = {"synchronize_session": False}
COMMAND_FIELDS = ("device_id", "action", "payload", "status", "expires_at")


def validate_action(action: Any, field: str = "action") -> str:
    if not isinstance(action, str) or not ACTION_RE.match(action):
        raise InvalidInput(
            fields={field: "1-64 characters: letters, digits and _ . : - (e.g. relay.on)."}
        )
    return action


def validate_payload(payload: Any, field: str = "payload") -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise InvalidInput(fields={field: 'A JSON object, e.g. {"seconds": 30}.'})
    return payload


def validate_expires_in(expires_in: Any, field: str = "expires_in") -> int:
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or not (1 <= expires_in <= MAX_EXPIRES_IN)
    ):
        raise InvalidInput(fields={field: f"Whole seconds from 1 to {MAX_EXPIRES_IN}."})
    return expires_in


def enqueue_command(
    actor: User | None,
    device: Device | int,
    action: str,
    payload: dict[str, Any] | None = None,
    expires_in: int = 3600,
) -> Command:
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
    for check, value in (
        (validate_action, action),
        (validate_payload, payload),
        (validate_expires_in, expires_in),
    ):
        try:
            check(value)
        except InvalidInput as exc:
            errors.update(exc.fields)
    if errors:
        raise InvalidInput(fields=errors)
    now = utcnow()
    command = Command(
        device=device,
        action=action,
        payload=payload or {},
        status=CommandStatus.queued,
        source=CommandSource.person,
        created_by=actor,
        created_at=now,
        expires_at=now + timedelta(seconds=expires_in),
    )
    db.session.add(command)
    db.session.flush()
    wake_bridge()
    audit.record(actor, "create", command, audit.diff({}, audit.snapshot(command, COMMAND_FIELDS)))
    return command


def get_command_for(user: User, command_id: int) -> Command:
    command = db.session.get(Command, command_id)
    if command is None or not may_see_device(user, command.device):
        raise NotFound("No such command.")
    return command


def _execute_update(statement: Update) -> int:
    """Run an ORM UPDATE that leaves loaded objects alone; return how many rows it changed."""
    # Session.execute is typed to return a Result; for an UPDATE it is a CursorResult.
    result = cast(CursorResult[Any], db.session.execute(statement, execution_options=_PLAIN))
    return result.rowcount


def cancel_command(actor: User | None, command: Command) -> Command:
    """Cancel a queued or delivered command; any other status is a Conflict."""
    if actor is not None:
        check_change(actor, command.device)
    before = command.status.value
    now = utcnow()
    changed = _execute_update(
        update(Command)
        .where(Command.id == command.id, Command.status.in_(OPEN))
        .values(status=CommandStatus.cancelled, finished_at=now, lease_expires_at=None)
    )
    db.session.refresh(command)
    if not changed:
        raise Conflict(
            f"Command {command.id} is {command.status.value}; only queued or "
            "delivered commands can be cancelled.",
            code="not_cancellable",
        )
    audit.record(actor, "cancel", command, {"status": [before, "cancelled"]})
    return command


def list_commands(
    user: User,
    *,
    status: CommandStatus | None = None,
    device_id: int | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[Command]:
    """Commands on devices the user may see, newest first; ``before_id`` is the keyset."""
    query = scope(select(Command), user, Command.device_id)
    if status is not None:
        query = query.where(Command.status == status)
    if device_id is not None:
        query = query.where(Command.device_id == device_id)
    if before_id is not None:
        query = query.where(Command.id < before_id)
    query = query.order_by(Command.id.desc()).limit(limit)
    return list(db.session.execute(query).scalars())


# The device's hot path runs prebuilt Core statements on the session's connection: no ORM
# objects, no statement building per poll (an empty poll is one SELECT).
_T = Command.__table__
_POLL = (
    select(
        _T.c.id,
        _T.c.status,
        _T.c.attempts,
        _T.c.action,
        _T.c.payload,
        _T.c.created_at,
        _T.c.expires_at,
    )
    .where(
        _T.c.device_id == bindparam("device_id"),
        _T.c.id > bindparam("after_id"),
        or_(
            _T.c.status == CommandStatus.queued,
            and_(_T.c.status == CommandStatus.delivered, _T.c.lease_expires_at <= bindparam("now")),
        ),
    )
    .order_by(_T.c.id)
    .limit(bindparam("wanted"))
)
# What a device's poll hands out: id, status, attempts, action, payload, created_at, expires_at.
PolledCommand: TypeAlias = Row[int, CommandStatus, int, str, dict[str, Any], datetime, datetime]
_AS_READ = (
    _T.c.id == bindparam("command_id"),
    _T.c.status == bindparam("read_status"),
    _T.c.attempts == bindparam("read_attempts"),
)
_DELIVER = (
    update(_T)
    .where(*_AS_READ)
    .values(
        status=CommandStatus.delivered,
        attempts=bindparam("new_attempts"),
        delivered_at=bindparam("now"),
        lease_expires_at=bindparam("lease_until"),
    )
)
_CLOSE = (
    update(_T)
    .where(*_AS_READ)
    .values(
        status=bindparam("new_status"),
        finished_at=bindparam("now"),
        lease_expires_at=None,
        reason=bindparam("new_reason"),
    )
)


def poll_commands(
    device: Device | DeviceRef,
    limit: int = 10,
    now: datetime | None = None,
    lease_seconds: int = LEASE_SECONDS,
    max_attempts: int = MAX_ATTEMPTS,
) -> list[PolledCommand]:
    """Hand out up to ``limit`` of the device's commands, oldest first, and mark them delivered.

    A command is handed out when it is queued, or delivered with its lease run out; each
    hand-out adds one to ``attempts`` and leases it for ``lease_seconds``. On the way, commands
    past ``expires_at`` become expired, and a lapsed lease after ``max_attempts`` hand-outs
    becomes failed with reason ``no_result``. Two concurrent polls never hand out the same
    command: each claim is an UPDATE conditional on the status and attempts read.
    Returns rows with ``id, action, payload, created_at, expires_at``.
    """
    now = now or utcnow()
    connection = db.session.connection()
    lease_until = now + timedelta(seconds=lease_seconds)
    handed: list[PolledCommand] = []
    ended: list[tuple[int, int]] = []
    after_id = 0
    while len(handed) < limit:
        wanted = limit - len(handed)
        rows = connection.execute(
            _POLL, {"device_id": device.id, "after_id": after_id, "now": now, "wanted": wanted}
        ).all()
        for row in rows:
            read = {
                "command_id": row.id,
                "read_status": row.status,
                "read_attempts": row.attempts,
                "now": now,
            }
            if row.expires_at <= now:
                closed = connection.execute(
                    _CLOSE, {**read, "new_status": CommandStatus.expired, "new_reason": None}
                )
                ended += [(row.id, device.id)] * closed.rowcount
            elif row.attempts >= max_attempts:
                closed = connection.execute(
                    _CLOSE, {**read, "new_status": CommandStatus.failed, "new_reason": "no_result"}
                )
                ended += [(row.id, device.id)] * closed.rowcount
            elif (
                connection.execute(
                    _DELIVER, {**read, "new_attempts": row.attempts + 1, "lease_until": lease_until}
                ).rowcount
                == 1
            ):
                handed.append(row)
        if len(rows) < wanted:
            break
        after_id = rows[-1].id
    if ended:
        alerts.commands_ended(ended, now)
    return handed


def report_result(
    device: Device | DeviceRef,
    command_id: int,
    status: CommandStatus | str,
    result: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Command:
    """Record a device's result for one of its commands.

    Idempotent: repeating a report that already holds is harmless. Raises NotFound for a
    command of another device (or none), Conflict when the command already ended otherwise
    (cancelled, expired, failed for lack of a result, or the other result), InvalidInput
    for a status other than succeeded/failed or a result that is not an object.
    """
    try:
        reported: CommandStatus | None = CommandStatus(status)
    except ValueError:
        reported = None
    if reported not in RESULT_STATUSES:
        raise InvalidInput(fields={"status": "succeeded or failed."})
    result = validate_payload(result, "result")
    changed = _execute_update(
        update(Command)
        .where(Command.id == command_id, Command.device_id == device.id, Command.status.in_(OPEN))
        .values(status=reported, result=result, finished_at=now or utcnow(), lease_expires_at=None)
    )
    command = db.session.execute(
        select(Command).where(Command.id == command_id).execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if command is None or command.device_id != device.id:
        raise NotFound("No such command.")
    if changed and reported is CommandStatus.failed:
        alerts.commands_ended([(command.id, command.device_id)], command.finished_at or utcnow())
    if changed or command.status is reported:
        return command
    raise Conflict(
        f"Command {command_id} is already {command.status.value}.", code="already_finished"
    )


def expire_commands(now: datetime, max_attempts: int = MAX_ATTEMPTS) -> int:
    """Close open commands past ``expires_at`` (expired) and delivered ones whose last lease
    ran out after ``max_attempts`` hand-outs (failed, ``no_result``); return how many.

    Safe to run from several scheduler processes at once: each UPDATE only moves open rows.
    """
    connection = db.session.connection()
    ended = [
        (row.id, row.device_id)
        for row in connection.execute(
            update(_T)
            .where(_T.c.status.in_([s.value for s in OPEN]), _T.c.expires_at <= now)
            .values(status=CommandStatus.expired.value, finished_at=now, lease_expires_at=None)
            .returning(_T.c.id, _T.c.device_id)
        ).all()
    ]
    ended += [
        (row.id, row.device_id)
        for row in connection.execute(
            update(_T)
            .where(
                _T.c.status == CommandStatus.delivered.value,
                _T.c.lease_expires_at <= now,
                _T.c.attempts >= max_attempts,
            )
            .values(
                status=CommandStatus.failed.value,
                reason="no_result",
                finished_at=now,
                lease_expires_at=None,
            )
            .returning(_T.c.id, _T.c.device_id)
        ).all()
    ]
    if ended:
        alerts.commands_ended(ended, now)
    return len(ended)
