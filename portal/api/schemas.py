"""The JSON shapes of the API: request bodies and query strings (validated), and answers.

These models check shape and types only (an object, no unknown fields, finite numbers, real
strings); the rules the admin needs too (name lengths, metric pattern, cron, time zones) live in
``services/`` and ``scheduling/timing.py``. The OpenAPI document is generated from these models.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

from portal.config import MAX_RETENTION_DAYS
from portal.models import (
    AlertState,
    Command,
    CommandSource,
    CommandStatus,
    Device,
    Reading,
    RuleKind,
    ScheduleKind,
    Severity,
)
from portal.services import mqtt_access
from portal.services.deletes import Deletion
from portal.services.readings import METRIC_RE, UNIT_RE
from portal.services.rules import MAX_FOR_SECONDS, MAX_SILENCE_SECONDS, MIN_SILENCE_SECONDS

# Ids are 32-bit on PostgreSQL (readings aside): a larger one would be a database error.
MAX_ID = 2**31 - 1
MAX_BIG_ID = 2**63 - 1
MAX_LIMIT = 500
MAX_POLL = 100


def _real_text(value: str) -> str:
    # PostgreSQL refuses NUL in text and JSON; refuse it here, as a named bad field.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _plain_json(value: Any) -> Any:
    """Reject what JSON columns cannot keep: NaN/Infinity and NUL characters, at any depth."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite")
        if isinstance(item, str):
            _real_text(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):  # year 1 or 9999 pushed out of range by the offset
        raise ValueError("out of range once converted to UTC") from None


Text = Annotated[str, AfterValidator(_real_text)]
Instant = Annotated[AwareDatetime, AfterValidator(_utc)]
JsonObject = Annotated[dict[str, JsonValue], AfterValidator(_plain_json)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class Body(BaseModel):
    """A request body: exact types, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Query(BaseModel):
    """A query string: values arrive as text and are converted; unknown names are ignored."""

    model_config = ConfigDict(extra="ignore")


class Out(BaseModel):
    """An answer."""

    model_config = ConfigDict(from_attributes=True)


# ---- errors -------------------------------------------------------------------------------


class ErrorDetail(Out):
    code: str = Field(examples=["validation_error"])
    message: str
    fields: dict[str, str] | None = Field(
        default=None, description="Only for validation errors: each bad field and why."
    )


class ErrorOut(Out):
    error: ErrorDetail


# ---- lists --------------------------------------------------------------------------------


class ListQuery(Query):
    limit: int = Field(default=50, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, description="next_cursor of the previous page.")


T = TypeVar("T")


class Page(Out, Generic[T]):
    items: list[T]
    next_cursor: str | None


# ---- the device's side ----------------------------------------------------------------------


class HeartbeatIn(Body):
    firmware: Annotated[Text, Field(max_length=64)] | None = None


class HeartbeatOut(Out):
    device_id: int
    server_time: datetime


class ReadingIn(Body):
    metric: Annotated[str, Field(pattern=METRIC_RE.pattern, examples=["temperature"])]
    value: Annotated[float, Field(allow_inf_nan=False, examples=[21.5])]
    ts: Instant | None = Field(default=None, description="Default: the server's time.")
    unit: str | None = Field(
        default=None,
        pattern=UNIT_RE.pattern,
        examples=["°C"],
        description="Optional: the metric's unit; the device's chart shows the latest sent.",
    )


class ReadingsIn(Body):
    readings: Annotated[list[ReadingIn], Field(min_length=1, max_length=1000)]


class AcceptedOut(Out):
    accepted: int


class PollQuery(Query):
    limit: int = Field(default=10, ge=1, le=MAX_POLL)


class DeviceCommandOut(Out):
    id: int
    action: str
    payload: dict[str, Any]
    created_at: datetime
    expires_at: datetime


class PollOut(Out):
    commands: list[DeviceCommandOut]


class ResultIn(Body):
    status: Literal["succeeded", "failed"]
    result: JsonObject | None = None


class ResultOut(Out):
    id: int
    status: CommandStatus


# ---- devices -----------------------------------------------------------------------------


RETENTION_DAYS = (
    f"How many days the device's readings are kept: 0 = forever, at most {MAX_RETENTION_DAYS};"
    " null = the installation's default (PORTAL_READINGS_RETENTION_DAYS, 90 unless set)."
)


class DeviceIn(Body):
    name: Text
    kind: Text | None = None
    location: Text | None = None
    description: Text | None = None
    enabled: bool = True
    owner: Text | None = Field(
        default=None, description="User name of the owner (admin only; default: the caller)."
    )
    readings_retention_days: int | None = Field(default=None, description=RETENTION_DAYS)


class DevicePatch(Body):
    name: Text | None = None
    kind: Text | None = None
    location: Text | None = None
    description: Text | None = None
    enabled: bool | None = None
    owner: Text | None = Field(default=None, description="User name (admin only).")
    readings_retention_days: int | None = Field(default=None, description=RETENTION_DAYS)


class DeviceMqttOut(Out):
    username: str = Field(
        examples=["dev-7"], description="The device's MQTT login (and client id): dev-<id>."
    )
    online: bool = Field(
        description="What the device last said on its retained up/status topic (or its will)."
    )
    credentials: Literal["in_step", "pending"] = Field(
        description="`pending` while the broker has not yet taken the device's last change "
        "(created, token rotated, enabled, disabled): its MQTT login is out of date until then."
    )


class DeviceOut(Out):
    id: int
    name: str
    kind: str
    location: str
    description: str
    enabled: bool
    owner_id: int
    owner: str
    firmware: str | None
    last_seen_at: datetime | None
    readings_retention_days: int | None = Field(description=RETENTION_DAYS)
    created_at: datetime
    updated_at: datetime
    mqtt: DeviceMqttOut

    @classmethod
    def of(cls, device: Device, pending: bool | None = None) -> DeviceOut:
        """``pending``: whether the device's MQTT login is out of date, when the caller knows
        (a list looks it up for all its devices at once); else it is looked up here."""
        if pending is None:
            pending = mqtt_access.state(device.id) == mqtt_access.PENDING
        computed = ("owner", "mqtt")
        return cls.model_validate(
            {
                **{
                    name: getattr(device, name) for name in cls.model_fields if name not in computed
                },
                "owner": device.owner.username,
                "mqtt": {
                    "username": mqtt_access.username(device.id),
                    "online": device.mqtt_online,
                    "credentials": mqtt_access.PENDING if pending else mqtt_access.IN_STEP,
                },
            }
        )

    @classmethod
    def many(cls, devices: list[Device]) -> list[DeviceOut]:
        """Each device's object, their MQTT login states looked up in one query."""
        pending = mqtt_access.pending_devices(d.id for d in devices)
        return [cls.of(d, pending=d.id in pending) for d in devices]


class DeviceWithTokenOut(DeviceOut):
    token: str = Field(description="Shown once: store it on the device.")

    @classmethod
    def with_token(cls, device: Device, token: str) -> DeviceWithTokenOut:
        return cls.model_validate({**DeviceOut.of(device).model_dump(), "token": token})


class DevicePage(Page[DeviceOut]):
    pass


# ---- readings ----------------------------------------------------------------------------


class ReadingsQuery(ListQuery):
    metric: str | None = None
    since: Instant | None = Field(default=None, description="Inclusive.")
    until: Instant | None = Field(default=None, description="Exclusive.")


class ReadingOut(Out):
    id: int
    metric: str
    value: float
    ts: datetime


class ReadingPage(Page[ReadingOut]):
    pass


def reading_item(row: Reading) -> dict[str, Any]:
    return {"id": row.id, "metric": row.metric, "value": row.value, "ts": row.recorded_at}


class SummaryQuery(Query):
    metric: Annotated[str, Field(pattern=METRIC_RE.pattern, examples=["temperature"])]
    step: Literal["hour", "day"] = Field(default="hour", description="The buckets' length.")
    since: Instant | None = Field(
        default=None,
        description="Inclusive: buckets that start at or after it. Default: 24 hours "
        "(step=hour) or 30 days (step=day) before `until`.",
    )
    until: Instant | None = Field(default=None, description="Exclusive. Default: now.")
    limit: int = Field(default=MAX_LIMIT, ge=1, le=MAX_LIMIT, description="Buckets per page.")
    cursor: str | None = Field(default=None, description="next_cursor of the previous page.")


class SummaryBucket(Out):
    start: datetime = Field(description="When the bucket starts (UTC, whole hours or days).")
    count: int
    min: float
    max: float
    mean: float
    sum: float
    last: float = Field(description="The value of the bucket's latest reading.")
    last_at: datetime = Field(description="That reading's time.")


class SummaryOut(Out):
    device_id: int
    metric: str
    step: Literal["hour", "day"]
    since: datetime
    until: datetime
    buckets: list[SummaryBucket] = Field(
        description="Oldest first; a bucket without readings is left out."
    )
    next_cursor: str | None


# ---- commands ----------------------------------------------------------------------------


class CommandIn(Body):
    action: Annotated[Text, Field(examples=["relay.on"])]
    payload: JsonObject | None = None
    expires_in: int | None = Field(default=None, description="Seconds; default 3600.")


class CommandsQuery(ListQuery):
    status: CommandStatus | None = None
    device_id: Id | None = None


class DeviceCommandsQuery(ListQuery):
    status: CommandStatus | None = None


class CommandOut(Out):
    id: int
    device_id: int
    action: str
    payload: dict[str, Any]
    status: CommandStatus
    source: CommandSource
    schedule_id: int | None
    due_at: datetime | None
    created_by_id: int | None
    created_at: datetime
    expires_at: datetime
    delivered_at: datetime | None
    attempts: int
    finished_at: datetime | None
    result: dict[str, Any] | None
    reason: str | None

    @classmethod
    def of(cls, command: Command) -> CommandOut:
        return cls.model_validate(command)


class CommandPage(Page[CommandOut]):
    pass


# ---- schedules ---------------------------------------------------------------------------

SunEvent = Literal["sunrise", "sunset", "dawn", "dusk"]
Degrees = Annotated[float, Field(allow_inf_nan=False)]


class SunIn(Body):
    """When a sun schedule fires: once a local day at the event plus the offset, at the place."""

    event: SunEvent = Field(description="Dawn and dusk are civil twilight (6° below).")
    offset_minutes: int = Field(
        default=0, description="Minutes after the event (negative: before), within ±720."
    )
    latitude: Degrees = Field(description="−90 to 90, north positive.", examples=[52.52])
    longitude: Degrees = Field(description="−180 to 180, east positive.", examples=[13.4])


class SunPatch(Body):
    """For a sun schedule, only the parts sent change; switching to the sun kind needs all."""

    event: SunEvent | None = None
    offset_minutes: int | None = None
    latitude: Degrees | None = None
    longitude: Degrees | None = None


class SunOut(Out):
    event: SunEvent
    offset_minutes: int
    latitude: float
    longitude: float


class ScheduleIn(Body):
    name: Text
    device_id: Id
    action: Text
    payload: JsonObject | None = None
    cron: Annotated[Text, Field(examples=["0 7 * * 1-5"])] | None = None
    interval_seconds: int | None = None
    run_at: Instant | None = None
    sun: SunIn | None = None
    timezone: Annotated[Text, Field(examples=["Europe/Berlin"])] | None = None
    enabled: bool = True
    start_at: Instant | None = None
    end_at: Instant | None = None
    misfire_grace_seconds: int | None = None
    command_ttl_seconds: int | None = None


class SchedulePatch(Body):
    name: Text | None = None
    device_id: Id | None = None
    action: Text | None = None
    payload: JsonObject | None = None
    cron: Text | None = None
    interval_seconds: int | None = None
    run_at: Instant | None = None
    sun: SunPatch | None = None
    timezone: Text | None = None
    enabled: bool | None = None
    start_at: Instant | None = None
    end_at: Instant | None = None
    misfire_grace_seconds: int | None = None
    command_ttl_seconds: int | None = None


class ScheduleOut(Out):
    id: int
    name: str
    device_id: int
    action: str
    payload: dict[str, Any]
    kind: ScheduleKind
    cron: str | None
    interval_seconds: int | None
    run_at: datetime | None
    sun: SunOut | None
    timezone: str
    enabled: bool
    start_at: datetime | None
    end_at: datetime | None
    misfire_grace_seconds: int
    command_ttl_seconds: int
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    fire_count: int
    skipped_count: int
    description: str = Field(description="The schedule in words.")
    created_at: datetime
    updated_at: datetime


class SchedulesQuery(ListQuery):
    device_id: Id | None = None


class SchedulePage(Page[ScheduleOut]):
    pass


class NextQuery(Query):
    count: int = Field(default=5, ge=1, le=50)


class FireTime(Out):
    utc: datetime
    local: str = Field(description="RFC 3339 with the schedule's UTC offset.")


class NextOut(Out):
    items: list[FireTime]


# ---- notification channels ---------------------------------------------------------------

ChannelKindName = Literal["webhook", "email"]


class ChannelIn(Body):
    name: Text
    kind: ChannelKindName
    url: Annotated[Text, Field(examples=["https://example.org/hooks/portal"])] | None = Field(
        default=None, description="A webhook's http(s) URL: each delivery is a signed JSON POST."
    )
    address: Annotated[Text, Field(examples=["ops@example.org"])] | None = Field(
        default=None, description="An email channel's address."
    )
    enabled: bool = True
    owner: Text | None = Field(
        default=None, description="User name of the owner (admin only; default: the caller)."
    )


class ChannelPatch(Body):
    name: Text | None = None
    kind: ChannelKindName | None = Field(
        default=None, description="Cannot change: only the channel's own kind is accepted."
    )
    url: Text | None = None
    address: Text | None = None
    enabled: bool | None = None
    owner: Text | None = Field(default=None, description="User name (admin only).")


class ChannelOut(Out):
    id: int
    name: str
    kind: ChannelKindName
    url: str | None
    address: str | None
    enabled: bool
    owner_id: int
    owner: str
    secret_prefix: str | None = Field(
        description="A webhook's signing secret begins so (to tell secrets apart); null for email."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, channel: Any) -> ChannelOut:
        return cls.model_validate(cls._values(channel))

    @classmethod
    def _values(cls, channel: Any) -> dict[str, Any]:
        computed = {
            "owner": channel.owner.username,
            "kind": channel.kind.value,
            "secret_prefix": channel.secret_prefix or None,
        }
        plain = {name: getattr(channel, name) for name in ChannelOut.model_fields}
        return {**plain, **computed}


class ChannelWithSecretOut(ChannelOut):
    secret: str | None = Field(
        description="A webhook's signing secret, shown this once: the receiver checks "
        "X-Portal-Signature with it. null for email."
    )

    @classmethod
    def with_secret(cls, channel: Any, secret: str | None) -> ChannelWithSecretOut:
        return cls.model_validate({**cls._values(channel), "secret": secret})


class ChannelPage(Page[ChannelOut]):
    pass


class DeliveryOut(Out):
    id: int
    channel_id: int
    event: str = Field(examples=["alert.raised"])
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str
    finished_at: datetime | None

    @classmethod
    def of(cls, delivery: Any) -> DeliveryOut:
        values = {name: getattr(delivery, name) for name in cls.model_fields}
        return cls.model_validate({**values, "status": delivery.status.value})


# ---- rules -------------------------------------------------------------------------------

Op = Literal[">", ">=", "<", "<="]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Metric = Annotated[str, Field(pattern=METRIC_RE.pattern, examples=["temperature"])]
ForSeconds = Annotated[int, Field(ge=0, le=MAX_FOR_SECONDS)]
SilenceSeconds = Annotated[int, Field(ge=MIN_SILENCE_SECONDS, le=MAX_SILENCE_SECONDS)]
# A rule notifies a handful of channels; the bound keeps the check one small query.
MAX_NOTIFY = 50
Notify = Annotated[list[Id], Field(max_length=MAX_NOTIFY, examples=[[1]])]


class RuleCommandIn(Body):
    """A command the rule queues when its alert is raised (``on_raise``) or resolved
    (``on_clear``), to a device in the rule owner's reach."""

    action: Annotated[Text, Field(examples=["fan.on"])]
    payload: JsonObject | None = None
    device_id: Id | None = Field(default=None, description="Default: the alert's device.")


class RuleCommandOut(Out):
    action: str
    payload: dict[str, Any]
    device_id: int | None


class RuleIn(Body):
    """``threshold`` needs ``device_id``, ``metric``, ``op`` and ``value``; ``silence`` needs
    ``device_id`` and ``seconds``; ``command_failed`` watches ``device_id`` or, without one,
    every device in the owner's reach."""

    name: Annotated[Text, Field(examples=["greenhouse too hot"])]
    kind: RuleKind
    device_id: Id | None = None
    enabled: bool = True
    severity: Severity = Severity.warning
    metric: Metric | None = Field(default=None, description="threshold only.")
    op: Op | None = Field(default=None, description="threshold only.")
    value: Finite | None = Field(default=None, description="threshold only.", examples=[30])
    for_seconds: ForSeconds = Field(
        default=0, description="threshold only: how long the condition must hold first."
    )
    clear_value: Finite | None = Field(
        default=None,
        description="threshold only: the alert clears when a reading crosses this value "
        "(hysteresis) instead of when the condition stops holding.",
        examples=[27],
    )
    seconds: SilenceSeconds | None = Field(
        default=None, description="silence only: how long the device may stay quiet."
    )
    on_raise: RuleCommandIn | None = None
    on_clear: RuleCommandIn | None = None
    notify: Notify = Field(
        default_factory=list, description="Ids of notification channels the owner may use."
    )
    owner: Text | None = Field(
        default=None, description="User name of the owner (admin only; default: the caller)."
    )


class RulePatch(Body):
    name: Text | None = None
    kind: RuleKind | None = Field(
        default=None, description="Cannot change: only the rule's own kind is accepted."
    )
    device_id: Id | None = None
    enabled: bool | None = None
    severity: Severity | None = None
    metric: Metric | None = None
    op: Op | None = None
    value: Finite | None = None
    for_seconds: ForSeconds | None = None
    clear_value: Finite | None = Field(default=None, description="null: no hysteresis.")
    seconds: SilenceSeconds | None = None
    on_raise: RuleCommandIn | None = Field(default=None, description="null: no command.")
    on_clear: RuleCommandIn | None = Field(default=None, description="null: no command.")
    notify: Notify | None = None
    owner: Text | None = Field(default=None, description="User name (admin only).")


RuleState = Literal["ok", "pending", "alerting"]


class RuleOut(Out):
    id: int
    name: str
    kind: RuleKind
    device_id: int | None
    enabled: bool
    severity: Severity
    metric: str | None
    op: Op | None
    value: float | None
    for_seconds: int
    clear_value: float | None
    seconds: int | None
    on_raise: RuleCommandOut | None
    on_clear: RuleCommandOut | None
    notify: list[int]
    owner_id: int
    owner: str
    description: str = Field(description="The condition in words.")
    state: RuleState = Field(
        description="`alerting`: the rule has an open alert; `pending`: a threshold holds "
        "but not yet for `for_seconds`; `ok` otherwise."
    )
    pending_since: datetime | None
    created_at: datetime
    updated_at: datetime


class RulesQuery(ListQuery):
    device_id: Id | None = None
    kind: RuleKind | None = None


class RulePage(Page[RuleOut]):
    pass


# ---- alerts ------------------------------------------------------------------------------


class AlertsQuery(ListQuery):
    state: Literal["active", "acknowledged", "resolved", "open"] | None = Field(
        default=None, description="`open`: active or acknowledged."
    )
    device_id: Id | None = None
    rule_id: Id | None = None


class AlertOut(Out):
    id: int
    rule_id: int
    device_id: int
    state: AlertState
    severity: Severity
    value: float | None = Field(
        description="The reading that raised it (threshold), the seconds of silence "
        "(silence), the command's id (command_failed)."
    )
    raised_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None


class AlertPage(Page[AlertOut]):
    pass


# ---- what a delete removes ------------------------------------------------------------------


class DeletedItem(Out):
    id: int
    name: str


class DeletedGroup(Out):
    type: str = Field(
        description="schedule, rule, channel (named one by one); command, reading, alert, "
        "delivery, token (counted).",
        examples=["schedule"],
    )
    count: int = Field(ge=1)
    more: bool = Field(
        description="Only in a preview: the count stopped at 10,000 and there are more "
        "(a busy device's readings are not counted to the end)."
    )
    items: list[DeletedItem] = Field(
        description="The named kinds' objects, at most 100 (`count` has them all); empty for "
        "counted kinds."
    )


class DeletionOut(Out):
    """An object and what goes with it when it is deleted (the database cascades)."""

    type: str = Field(examples=["device"])
    id: int
    name: str
    dependents: list[DeletedGroup] = Field(
        description="Each kind of object deleted with it; named kinds first. Empty when "
        "nothing else goes (a schedule's commands stay)."
    )

    @classmethod
    def of(cls, deletion: Deletion) -> DeletionOut:
        return cls(
            type=deletion.kind,
            id=deletion.id,
            name=deletion.name,
            dependents=[
                DeletedGroup(
                    type=group.kind,
                    count=group.count,
                    more=group.more,
                    items=[DeletedItem(id=item.id, name=item.name) for item in group.items],
                )
                for group in deletion.dependents
            ],
        )
