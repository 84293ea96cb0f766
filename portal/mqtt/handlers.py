"""What the bridge does with one message a device published: the same services as HTTP.

``handle`` validates and stores (in the caller's transaction, which the bridge commits for a
batch of messages) and returns what to answer on the device's ``down/acks`` topic. It writes
nothing until the message has passed every check, so a bad message leaves the transaction as
it found it and the batch goes on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from sqlalchemy import bindparam, select, update

from portal.api.errors import error_body
from portal.api.routing import validation_failure
from portal.api.schemas import MAX_ID, HeartbeatIn, ReadingsIn, ResultIn
from portal.extensions import db
from portal.models import Device
from portal.services import commands, devices, idempotency, readings
from portal.services.devices import DeviceRef
from portal.services.errors import DomainError, InvalidInput

USERNAME_RE = re.compile(r"^dev-([1-9][0-9]{0,9})$")
STATUSES = {b"online": True, b"offline": False}


class MqttReadingsIn(ReadingsIn):
    """``POST /device/readings``'s body, plus the batch's idempotency key."""

    key: str | None = None


@dataclass
class Outcome:
    """What came of one message: whom to answer (None: nobody) and with what."""

    device_id: int | None = None
    ack: dict[str, Any] | None = None
    online: bool | None = None  # the device's new MQTT status, when the message said one
    stored: int = 0  # readings stored
    extra: dict[str, Any] = field(default_factory=dict)


class TooLarge(DomainError):
    code = "payload_too_large"
    status = 413


class UnknownTopic(DomainError):
    code = "unknown_topic"
    status = 404


def parse_topic(prefix: str, topic: str) -> tuple[int, str] | None:
    """``(device id, what)`` for ``<prefix>/dev-<id>/up/<what>``, else None."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head) :].split("/", 2)
    if len(parts) != 3 or parts[1] != "up":
        return None
    match = USERNAME_RE.match(parts[0])
    if match is None or int(match.group(1)) > MAX_ID:
        return None
    return int(match.group(1)), parts[2]


_DEVICES = Device.__table__
_FIND = select(
    _DEVICES.c.id, _DEVICES.c.enabled, _DEVICES.c.last_seen_at, _DEVICES.c.mqtt_seen_at
).where(_DEVICES.c.id == bindparam("device_id"))
_TOUCH = (
    update(_DEVICES)
    .where(_DEVICES.c.id == bindparam("device_id"))
    .values(
        last_seen_at=bindparam("seen_at"),
        mqtt_seen_at=bindparam("seen_at"),
        updated_at=_DEVICES.c.updated_at,
    )
)


def handle(
    prefix: str,
    topic: str,
    payload: bytes,
    now: datetime,
    *,
    max_bytes: int,
    touch_seconds: int = 60,
) -> Outcome:
    """Handle one message published on ``topic``; never raises a DomainError."""
    where = parse_topic(prefix, topic)
    if where is None:  # not a device's topic: the broker's ACLs make this the bridge's own
        return Outcome()
    device_id, what = where
    connection = db.session.connection()
    row = connection.execute(_FIND, {"device_id": device_id}).first()
    if row is None or not row.enabled:  # deleted or disabled since: its login is going
        return Outcome()
    if row.mqtt_seen_at is None or now - row.mqtt_seen_at > timedelta(seconds=touch_seconds):
        connection.execute(_TOUCH, {"device_id": device_id, "seen_at": now})
    device = DeviceRef(device_id, now)
    key: Any = None
    if what == "readings":  # named in an error answer, so the board knows which batch it was
        key = _key_of(payload)
    try:
        if len(payload) > max_bytes:
            raise TooLarge(f"The message is larger than the {max_bytes} bytes the portal takes.")
        if what == "status":
            return _status(device, payload)
        if what == "heartbeat":
            body = _parse(HeartbeatIn, payload, required=False)
            devices.record_heartbeat(device, firmware=body.firmware, now=now)
            return Outcome(device_id, _ack(what, None, accepted=1))
        if what == "readings":
            return _readings(device, topic, payload, now)
        if what.startswith("results/"):
            return _result(device, what, payload, now)
        raise UnknownTopic(
            f"Nothing is published to up/{what}: use up/heartbeat, up/readings, "
            "up/results/<command id> or up/status."
        )
    except DomainError as exc:
        return Outcome(
            device_id,
            {"topic": what, "key": key, "error": error_body(exc.code, exc.message, exc.fields)},
        )


def _ack(what: str, key: str | None, **values: Any) -> dict[str, Any]:
    return {"topic": what, "key": key, **values}


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], payload: bytes, required: bool = True) -> M:
    if not payload.strip():
        if required:
            raise InvalidInput("The message needs a JSON body.", fields={"body": "A JSON object."})
        return model()
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        raise validation_failure(exc) from None


def _key_of(payload: bytes) -> str | None:
    """The batch's key, to name in an error answer (when the message is JSON with one)."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    key = body.get("key") if isinstance(body, dict) else None
    return key if isinstance(key, str) else None


def _status(device: DeviceRef, payload: bytes) -> Outcome:
    online = STATUSES.get(payload.strip())
    if online is None:
        raise InvalidInput(
            "up/status takes the plain text online or offline.",
            fields={"status": "online or offline."},
        )
    db.session.connection().execute(
        update(_DEVICES)
        .where(_DEVICES.c.id == device.id)
        .values(mqtt_online=online, updated_at=_DEVICES.c.updated_at)
    )
    return Outcome(device.id, None, online=online)


def _readings(device: DeviceRef, topic: str, payload: bytes, now: datetime) -> Outcome:
    body = _parse(MqttReadingsIn, payload)
    key = body.key
    caller = f"device:{device.id}"
    request_hash = idempotency.fingerprint("MQTT", topic, payload)
    if key is not None:
        idempotency.validate_key(key)
        replay = idempotency.check_replay(caller, key, request_hash, now)
        if replay is not None:
            accepted = replay.body.get("accepted", 0) if isinstance(replay.body, dict) else 0
            return Outcome(device.id, _ack("readings", key, accepted=accepted, replayed=True))
    items = [readings.ReadingInput(r.metric, r.value, r.ts) for r in body.readings]
    stored = readings.record_readings(device, items, now)
    if key is not None:
        idempotency.remember(caller, key, request_hash, 201, {"accepted": stored}, now)
    return Outcome(device.id, _ack("readings", key, accepted=stored), stored=stored)


def _result(device: DeviceRef, what: str, payload: bytes, now: datetime) -> Outcome:
    raw_id = what.removeprefix("results/")
    if not raw_id.isdigit() or not 1 <= int(raw_id) <= MAX_ID:
        raise UnknownTopic(f"up/{what}: the topic ends in the command's id, e.g. up/results/42.")
    body = _parse(ResultIn, payload)
    command = commands.report_result(device, int(raw_id), body.status, body.result, now)
    return Outcome(
        device.id, _ack(what, None, accepted=1, id=command.id, status=command.status.value)
    )
