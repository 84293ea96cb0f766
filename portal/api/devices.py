"""Devices for people and scripts: CRUD, token rotation, and a device's readings and commands."""

from __future__ import annotations

from flask import current_app
from sqlalchemy.orm import joinedload

from portal.api.deleting import deleted
from portal.api.pagination import decode_id_cursor, decode_time_cursor, page
from portal.api.routing import patch_fields, route
from portal.api.schemas import (
    CommandIn,
    CommandOut,
    CommandPage,
    DeletionOut,
    DeviceCommandsQuery,
    DeviceIn,
    DeviceOut,
    DevicePage,
    DevicePatch,
    DeviceWithTokenOut,
    ListQuery,
    ReadingPage,
    ReadingsQuery,
    reading_item,
)
from portal.extensions import db
from portal.models import Device, User
from portal.services import commands, deletes, devices, readings
from portal.services.access import device_query_for, get_device_for

NOT_NULL = ("name", "enabled")


@route(
    "/devices", summary="List devices", tag="devices", query=ListQuery, responses={200: DevicePage}
)
def list_devices(user: User, query: ListQuery):
    """Operators see their own devices; viewers and admins see all. Ordered by id."""
    after = decode_id_cursor(query.cursor)
    statement = device_query_for(user).options(joinedload(Device.owner)).order_by(Device.id)
    if after is not None:
        statement = statement.where(Device.id > after)
    rows = db.session.execute(statement.limit(query.limit + 1)).scalars().all()
    shown, cursor = page(rows, query.limit, lambda d: (d.id,))
    return DevicePage(items=DeviceOut.many(shown), next_cursor=cursor)


@route(
    "/devices",
    "POST",
    summary="Create a device",
    tag="devices",
    body=DeviceIn,
    responses={201: DeviceWithTokenOut},
    errors=(409,),
)
def create_device(user: User, body: DeviceIn):
    """Answers the device with its ``token``, shown this once."""
    device, token = devices.create_device(
        user,
        body.name,
        owner=body.owner,
        kind=body.kind,
        location=body.location,
        description=body.description,
        enabled=body.enabled,
        readings_retention_days=body.readings_retention_days,
    )
    return DeviceWithTokenOut.with_token(device, token), 201


@route("/devices/{device_id}", summary="Show a device", tag="devices", responses={200: DeviceOut})
def show_device(user: User, device_id: int):
    return DeviceOut.of(get_device_for(user, device_id))


@route(
    "/devices/{device_id}",
    "PATCH",
    summary="Change a device",
    tag="devices",
    body=DevicePatch,
    responses={200: DeviceOut},
    errors=(409,),
)
def change_device(user: User, device_id: int, body: DevicePatch):
    """Only the fields sent change; ``owner`` (a user name) is for admins;
    ``readings_retention_days`` null goes back to the installation's default."""
    device = get_device_for(user, device_id, for_change=True)
    fields = patch_fields(body, NOT_NULL, ("owner",))
    return DeviceOut.of(devices.update_device(user, device, **fields))


@route(
    "/devices/{device_id}",
    "DELETE",
    summary="Delete a device",
    tag="devices",
    responses={204: None, 200: DeletionOut},
)
def delete_device(user: User, device_id: int):
    """Its schedules, rules, alerts, commands and readings go with it, each in the audit log.
    Answers 204; with `Prefer: return=representation`, 200 and what was deleted. `GET
    /devices/{device_id}/delete-preview` tells the same beforehand."""
    return deleted(devices.delete_device(user, get_device_for(user, device_id, for_change=True)))


@route(
    "/devices/{device_id}/delete-preview",
    summary="What deleting a device would remove",
    tag="devices",
    responses={200: DeletionOut},
    errors=(403,),
)
def preview_device_delete(user: User, device_id: int):
    """Nothing is deleted. Counts stop at 10,000 (`more`: there are more); 403 for a role
    that may not delete it."""
    return DeletionOut.of(deletes.preview(user, get_device_for(user, device_id, for_change=True)))


@route(
    "/devices/{device_id}/token",
    "POST",
    summary="Rotate a device's token",
    tag="devices",
    responses={200: DeviceWithTokenOut},
)
def rotate_token(user: User, device_id: int):
    """The new token is shown this once; the old one stops working at once."""
    device = get_device_for(user, device_id, for_change=True)
    token = devices.rotate_device_token(user, device)
    return DeviceWithTokenOut.with_token(device, token)


@route(
    "/devices/{device_id}/readings",
    summary="A device's readings, newest first",
    tag="devices",
    query=ReadingsQuery,
    responses={200: ReadingPage},
)
def list_readings(user: User, device_id: int, query: ReadingsQuery):
    """Filter by ``metric``, ``since`` (inclusive) and ``until`` (exclusive)."""
    device = get_device_for(user, device_id)
    rows = readings.list_readings(
        device,
        metric=query.metric,
        since=query.since,
        until=query.until,
        limit=query.limit + 1,
        before=decode_time_cursor(query.cursor),
    )
    shown, cursor = page(rows, query.limit, lambda r: (r.recorded_at, r.id))
    return {"items": [reading_item(r) for r in shown], "next_cursor": cursor}


@route(
    "/devices/{device_id}/commands",
    summary="A device's commands, newest first",
    tag="devices",
    query=DeviceCommandsQuery,
    responses={200: CommandPage},
)
def list_device_commands(user: User, device_id: int, query: DeviceCommandsQuery):
    device = get_device_for(user, device_id)
    rows = commands.list_commands(
        user,
        status=query.status,
        device_id=device.id,
        limit=query.limit + 1,
        before_id=decode_id_cursor(query.cursor),
    )
    shown, cursor = page(rows, query.limit, lambda c: (c.id,))
    return CommandPage(items=[CommandOut.of(c) for c in shown], next_cursor=cursor)


@route(
    "/devices/{device_id}/commands",
    "POST",
    summary="Send a command",
    tag="devices",
    body=CommandIn,
    responses={201: CommandOut},
    idempotent=True,
)
def send_command(user: User, device_id: int, body: CommandIn):
    """The command starts ``queued`` and expires after ``expires_in`` seconds."""
    expires_in = body.expires_in
    if expires_in is None:
        expires_in = current_app.config["COMMAND_DEFAULT_EXPIRES_IN"]
    command = commands.enqueue_command(user, device_id, body.action, body.payload, expires_in)
    return CommandOut.of(command), 201
