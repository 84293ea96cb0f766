"""What a device calls with its own token: heartbeat, readings upload, command poll, results.

These are the hot paths: answers are built as plain dicts and written with orjson, and each
request costs the token look-up plus the one or two statements it needs.
"""

from __future__ import annotations

from flask import current_app

from portal.api.routing import route
from portal.api.schemas import (
    AcceptedOut,
    HeartbeatIn,
    HeartbeatOut,
    PollOut,
    PollQuery,
    ReadingsIn,
    ResultIn,
    ResultOut,
)
from portal.models import utcnow
from portal.services import commands, devices, readings
from portal.services.devices import DeviceRef


@route(
    "/device/heartbeat",
    "POST",
    auth="device",
    summary="Say the device is alive",
    tag="device",
    body=HeartbeatIn,
    body_required=False,
    responses={200: HeartbeatOut},
)
def heartbeat(device: DeviceRef, body: HeartbeatIn):
    """The body may be empty; ``firmware`` is stored when it changes."""
    now = utcnow()
    devices.record_heartbeat(device, firmware=body.firmware, now=now)
    return {"device_id": device.id, "server_time": now}


@route(
    "/device/readings",
    "POST",
    auth="device",
    summary="Upload readings",
    tag="device",
    body=ReadingsIn,
    responses={201: AcceptedOut},
    idempotent=True,
)
def upload_readings(device: DeviceRef, body: ReadingsIn):
    """1 to 1000 readings, all or nothing; a reading without ``ts`` gets the server's time."""
    items = [readings.ReadingInput(r.metric, r.value, r.ts, r.unit) for r in body.readings]
    return {"accepted": readings.record_readings(device, items, utcnow())}, 201


@route(
    "/device/commands",
    auth="device",
    summary="Fetch commands to run",
    tag="device",
    query=PollQuery,
    responses={200: PollOut},
)
def poll_commands(device: DeviceRef, query: PollQuery):
    """The listed commands become ``delivered`` and are leased to this device; one not
    answered within the lease is handed out again (at most 5 times in all)."""
    config = current_app.config
    rows = commands.poll_commands(
        device,
        query.limit,
        utcnow(),
        lease_seconds=config["COMMAND_LEASE_SECONDS"],
        max_attempts=config["COMMAND_MAX_ATTEMPTS"],
    )
    return {
        "commands": [
            {
                "id": r.id,
                "action": r.action,
                "payload": r.payload,
                "created_at": r.created_at,
                "expires_at": r.expires_at,
            }
            for r in rows
        ]
    }


@route(
    "/device/commands/{command_id}/result",
    "POST",
    auth="device",
    tag="device",
    summary="Report a command's result",
    body=ResultIn,
    responses={200: ResultOut},
    errors=(404, 409),
)
def report_result(device: DeviceRef, command_id: int, body: ResultIn):
    """Repeating the same report is harmless; another device's command is 404."""
    command = commands.report_result(device, command_id, body.status, body.result)
    return {"id": command.id, "status": command.status.value}
