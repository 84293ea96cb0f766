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
from portal.services import alerts, commands, devices, idempotency, readings
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
_FIND = select(_DEVICES.c.id, _DEVICES.c.enabled, _DEVICES.c.mqtt_seen_at).where(
    _DEVICES.c.id.in_(bindparam("device_ids", expanding=True))
)
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
    return handle_batch(
        prefix, [(topic, payload)], now, max_bytes=max_bytes, touch_seconds=touch_seconds
    )[0]


@dataclass
class _Batch:
    """A readings message that passed every check, waiting to be stored with the others."""

    index: int
    device_id: int
    key: str | None
    request_hash: str
    rows: list[tuple[str, float, datetime]]
    units: dict[str, str]  # by metric, as the message sent them


def handle_batch(
    prefix: str,
    messages: list[tuple[str, bytes]],
    now: datetime,
    *,
    max_bytes: int,
    touch_seconds: int = 60,
) -> list[Outcome]:
    """Handle messages as one set: one look-up of their devices and of their batches' keys,
    one INSERT of every reading they carry, one of their keys. Answers come in their order.

    The same rules as one message at a time (and as HTTP): each readings message is stored all
    or nothing, a key seen before replays its first answer, even within the set.
    """
    connection = db.session.connection()
    where = [
        # An empty status is a retained status being cleared (the bridge does that when it
        # drops a login): nothing the device said.
        None if place is None or (place[1] == "status" and not payload) else place
        for place, (_, payload) in zip(
            (parse_topic(prefix, topic) for topic, _ in messages), messages, strict=True
        )
    ]
    device_ids = sorted({w[0] for w in where if w is not None})
    found = {row.id: row for row in connection.execute(_FIND, {"device_ids": device_ids})}
    stale = timedelta(seconds=touch_seconds)
    touch = [
        {"device_id": row.id, "seen_at": now}
        for row in found.values()
        if row.enabled and (row.mqtt_seen_at is None or now - row.mqtt_seen_at > stale)
    ]
    if touch:
        connection.execute(_TOUCH, touch)
    outcomes: list[Outcome] = [Outcome() for _ in messages]
    waiting: list[_Batch] = []
    for index, ((topic, payload), place) in enumerate(zip(messages, where, strict=True)):
        row = found.get(place[0]) if place is not None else None
        # Not a device's topic (the ACLs make that the bridge's own), or a device deleted since,
        # or disabled (its login is going; only its going offline is still noted): nobody to
        # answer.
        if place is None or row is None or (not row.enabled and place[1] != "status"):
            continue
        device_id, what = place
        try:
            if len(payload) > max_bytes:
                raise TooLarge(
                    f"The message is larger than the {max_bytes} bytes the portal takes."
                )
            if what == "readings":
                waiting.append(_checked_readings(index, device_id, topic, payload, now))
            else:
                outcomes[index] = _handle_other(DeviceRef(device_id, now), what, payload, now)
        except DomainError as exc:
            # A readings error names the batch's key when it can be read, so the board knows.
            key = _key_of(payload) if what == "readings" else None
            outcomes[index] = _error(device_id, what, key, exc)
    if waiting:
        _store(waiting, outcomes, now)
    return outcomes


def _error(device_id: int, what: str, key: Any, exc: DomainError) -> Outcome:
    return Outcome(
        device_id,
        {"topic": what, "key": key, "error": error_body(exc.code, exc.message, exc.fields)},
    )


def _handle_other(device: DeviceRef, what: str, payload: bytes, now: datetime) -> Outcome:
    if what == "status":
        return _status(device, payload)
    if what == "heartbeat":
        body = _parse(HeartbeatIn, payload, required=False)
        devices.record_heartbeat(device, firmware=body.firmware, now=now)
        return Outcome(device.id, _ack(what, None, accepted=1))
    if what.startswith("results/"):
        return _result(device, what, payload, now)
    raise UnknownTopic(
        f"Nothing is published to up/{what}: use up/heartbeat, up/readings, "
        "up/results/<command id> or up/status."
    )


def _checked_readings(
    index: int, device_id: int, topic: str, payload: bytes, now: datetime
) -> _Batch:
    body = _parse(MqttReadingsIn, payload)
    if body.key is not None:
        idempotency.validate_key(body.key)
    items = [readings.ReadingInput(r.metric, r.value, r.ts, r.unit) for r in body.readings]
    return _Batch(
        index,
        device_id,
        body.key,
        idempotency.fingerprint("MQTT", topic, payload),
        readings.validate_readings(items, now),
        readings.units_of(items),
    )


def _store(waiting: list[_Batch], outcomes: list[Outcome], now: datetime) -> None:
    """Store the checked readings messages that are not repeats, and answer each."""
    keyed = [(f"device:{b.device_id}", b.key) for b in waiting if b.key is not None]
    known = idempotency.find_records(keyed, now)
    first: dict[tuple[str, str], _Batch] = {}
    stored: list[_Batch] = []
    for batch in waiting:
        if batch.key is not None:
            caller_key = (f"device:{batch.device_id}", batch.key)
            earlier, record = first.get(caller_key), known.get(caller_key)
            first_answer: tuple[str, int, Any] | None = None
            if earlier is not None:  # the same key earlier in this very set
                first_answer = (earlier.request_hash, 201, {"accepted": len(earlier.rows)})
            elif record is not None:
                first_answer = (record.request_hash, record.status_code, record.response_body)
            if first_answer is not None:
                try:
                    answer = idempotency.replay(*first_answer, batch.request_hash)
                except DomainError as exc:
                    outcomes[batch.index] = _error(batch.device_id, "readings", batch.key, exc)
                    continue
                outcomes[batch.index] = Outcome(
                    batch.device_id,
                    _ack("readings", batch.key, accepted=_accepted(answer.body), replayed=True),
                )
                continue
            first[caller_key] = batch
        stored.append(batch)
    rows = [(b.device_id, *row) for b in stored for row in b.rows]
    readings.insert_rows(rows)
    readings.remember_units(
        {(b.device_id, metric): unit for b in stored for metric, unit in b.units.items()}
    )
    alerts.judge_readings(rows, now)
    idempotency.remember_many(
        [
            (f"device:{b.device_id}", b.key, b.request_hash, 201, {"accepted": len(b.rows)})
            for b in stored
            if b.key is not None
        ],
        now,
    )
    for batch in stored:
        outcomes[batch.index] = Outcome(
            batch.device_id,
            _ack("readings", batch.key, accepted=len(batch.rows)),
            stored=len(batch.rows),
        )


def _accepted(body: Any) -> int:
    return int(body.get("accepted", 0)) if isinstance(body, dict) else 0


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


def _result(device: DeviceRef, what: str, payload: bytes, now: datetime) -> Outcome:
    raw_id = what.removeprefix("results/")
    if not raw_id.isdigit() or not 1 <= int(raw_id) <= MAX_ID:
        raise UnknownTopic(f"up/{what}: the topic ends in the command's id, e.g. up/results/42.")
    body = _parse(ResultIn, payload)
    command = commands.report_result(device, int(raw_id), body.status, body.result, now)
    return Outcome(
        device.id, _ack(what, None, accepted=1, id=command.id, status=command.status.value)
    )
