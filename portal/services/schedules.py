"""Schedules: creating, changing, enabling, running now, and showing when they will fire.

The time arithmetic lives in ``portal.scheduling.timing``; firing due schedules is the runner's
job (``portal.scheduling.runner``). Every change here writes one audit entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, overload
from zoneinfo import ZoneInfo

from portal.extensions import db
from portal.models import (
    Command,
    CommandSource,
    CommandStatus,
    Device,
    Schedule,
    ScheduleKind,
    User,
    utcnow,
)
from portal.scheduling import timing
from portal.services import audit, deletes
from portal.services.access import check_change, get_device_for, may_see_device
from portal.services.commands import MAX_EXPIRES_IN, validate_action, validate_payload
from portal.services.errors import InvalidInput, NotFound

SCHEDULE_FIELDS = (
    "name",
    "device_id",
    "action",
    "payload",
    "kind",
    "cron",
    "interval_seconds",
    "run_at",
    "sun_event",
    "sun_offset_minutes",
    "sun_latitude",
    "sun_longitude",
    "timezone",
    "enabled",
    "start_at",
    "end_at",
    "misfire_grace_seconds",
    "command_ttl_seconds",
    "next_fire_at",
)
KIND_FIELDS = timing.KIND_FIELDS
TIMING_FIELDS = KIND_FIELDS + ("timezone", "start_at", "end_at")
EDITABLE = (
    "name",
    "device",
    "action",
    "payload",
    "enabled",
    "misfire_grace_seconds",
    "command_ttl_seconds",
) + TIMING_FIELDS
MAX_NAME = 100
MAX_GRACE_SECONDS = 30 * 24 * 3600
MAX_COUNT = 100
EXACTLY_ONE = timing.EXACTLY_ONE


# ---- the spec of a stored schedule --------------------------------------------------------


def spec_of(schedule: Any) -> timing.Spec:
    """The timing spec of a schedule (a model or a row with the same columns), unvalidated.

    An interval without ``start_at`` is anchored at the creation time, to whole seconds.
    A sun schedule's settings are read from its ``sun_*`` columns.
    """
    kind = schedule.kind.value if isinstance(schedule.kind, ScheduleKind) else schedule.kind
    anchor = None
    if kind == timing.INTERVAL:
        anchor = schedule.start_at
        if anchor is None and schedule.created_at is not None:
            anchor = schedule.created_at.replace(microsecond=0)
    return timing.Spec(
        kind=kind,
        cron=schedule.cron,
        interval_seconds=schedule.interval_seconds,
        run_at=schedule.run_at,
        sun=sun_of(schedule),
        timezone=schedule.timezone or "UTC",
        start_at=schedule.start_at,
        end_at=schedule.end_at,
        anchor=anchor,
    )


def sun_of(schedule: Any) -> timing.Sun | None:
    """A schedule's sun settings (None for the other kinds), unvalidated."""
    if schedule.sun_event is None:
        return None
    return timing.Sun(
        event=schedule.sun_event,
        offset_minutes=schedule.sun_offset_minutes or 0,
        latitude=schedule.sun_latitude,
        longitude=schedule.sun_longitude,
    )


# ---- validation ---------------------------------------------------------------------------


def _check_int(value: Any, low: int, high: int) -> int:
    checked = timing.whole_number_between(value, low, high)
    if checked is None:
        raise ValueError(f"Whole seconds from {low} to {high}.")
    return checked


def _clean_plain(values: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    """Check the non-timing fields present in ``values``; put problems in ``errors``."""
    clean: dict[str, Any] = {}
    if "name" in values:
        name = "" if values["name"] is None else str(values["name"]).strip()
        if not name:
            errors["name"] = "A name is required."
        elif len(name) > MAX_NAME:
            errors["name"] = f"At most {MAX_NAME} characters."
        clean["name"] = name
    for field, check in (("action", validate_action), ("payload", validate_payload)):
        if field in values:
            try:
                clean[field] = check(values[field])
            except InvalidInput as exc:
                errors.update(exc.fields)
    if "enabled" in values:
        clean["enabled"] = bool(values["enabled"])
    for field, low, high in (
        ("misfire_grace_seconds", 0, MAX_GRACE_SECONDS),
        ("command_ttl_seconds", 1, MAX_EXPIRES_IN),
    ):
        if field in values:
            try:
                clean[field] = _check_int(values[field], low, high)
            except ValueError as exc:
                errors[field] = str(exc)
    return clean


def _clean_timing(
    values: dict[str, Any], anchor: datetime, errors: dict[str, str]
) -> timing.Spec | None:
    """Validate the timing fields into a Spec, naming every bad field in ``errors``."""
    given = [name for name in KIND_FIELDS if values.get(name) is not None]
    if len(given) != 1:
        for name in given or KIND_FIELDS:
            errors[name] = EXACTLY_ONE
    checks: list[tuple[str, Callable[[Any], object]]] = [
        ("timezone", lambda v: timing.validate_timezone(v)),
        ("start_at", lambda v: timing.validate_instant(v, "start_at")),
        ("end_at", lambda v: timing.validate_instant(v, "end_at")),
        ("cron", timing.validate_cron),
        ("interval_seconds", timing.validate_interval),
        ("run_at", lambda v: timing.validate_instant(v, "run_at")),
        ("sun", timing.validate_sun),
    ]
    for field, check in checks:
        if values.get(field) is not None and field not in errors:
            try:
                check(values[field])
            except timing.TimingError as exc:
                errors.update(exc.fields)
    if errors:
        return None
    try:
        return timing.make_spec(anchor=anchor, **{name: values.get(name) for name in TIMING_FIELDS})
    except timing.TimingError as exc:
        errors[exc.field] = exc.message
        return None


def _first_fire(spec: timing.Spec, now: datetime) -> datetime:
    try:
        return timing.check_fires(spec, now)
    except timing.TimingError as exc:
        raise InvalidInput(fields={exc.field: exc.message}) from None


def _resolve_device(actor: User | None, device: Device | int | Any) -> Device:
    """The device the schedule sends to; the actor must be allowed to change it."""
    if isinstance(device, Device):
        if actor is not None:
            check_change(actor, device)
        return device
    if isinstance(device, bool) or not isinstance(device, int):
        raise InvalidInput(fields={"device_id": "A device id (a whole number)."})
    try:
        if actor is None:
            found = db.session.get(Device, device)
            if found is None:
                raise NotFound("No such device.")
            return found
        return get_device_for(actor, device, for_change=True)
    except NotFound:
        # A device out of reach looks exactly like one that does not exist.
        raise InvalidInput(fields={"device_id": "No such device."}) from None


# ---- changes ------------------------------------------------------------------------------


def create_schedule(
    actor: User | None,
    *,
    name: str,
    device: Device | int,
    action: str,
    payload: dict[str, Any] | None = None,
    cron: str | None = None,
    interval_seconds: int | None = None,
    run_at: datetime | None = None,
    sun: Mapping[str, Any] | timing.Sun | None = None,
    timezone: str = "UTC",
    enabled: bool = True,
    start_at: datetime | None = None,
    end_at: datetime | None = None,
    misfire_grace_seconds: int = 300,
    command_ttl_seconds: int = 3600,
    now: datetime | None = None,
) -> Schedule:
    """Create a schedule for a device the actor may change (``actor`` None: the shell).

    Exactly one of ``cron``, ``interval_seconds``, ``run_at`` and ``sun`` (``{"event",
    "offset_minutes", "latitude", "longitude"}``) says when. Raises InvalidInput naming each
    bad field (``sun.latitude`` and so on; a window that can never fire included), Forbidden
    for a viewer. Instants are aware; the next due time is computed from ``now``.
    """
    now = now or utcnow()
    target = _resolve_device(actor, device)
    values = {
        "name": name,
        "action": action,
        "payload": payload,
        "enabled": enabled,
        "misfire_grace_seconds": misfire_grace_seconds,
        "command_ttl_seconds": command_ttl_seconds,
        "cron": cron,
        "interval_seconds": interval_seconds,
        "run_at": run_at,
        "sun": sun,
        "timezone": timezone,
        "start_at": start_at,
        "end_at": end_at,
    }
    errors: dict[str, str] = {}
    clean = _clean_plain(values, errors)
    spec = _clean_timing(values, now, errors)
    if spec is None or errors:
        raise InvalidInput(fields=errors)
    first = _first_fire(spec, now)
    schedule = Schedule(device=target, created_at=now, updated_at=now, **clean)
    _apply_spec(schedule, spec)
    schedule.next_fire_at = first if schedule.enabled else None
    db.session.add(schedule)
    db.session.flush()
    audit.record(
        actor, "create", schedule, audit.diff({}, audit.snapshot(schedule, SCHEDULE_FIELDS))
    )
    return schedule


def _apply_spec(schedule: Schedule, spec: timing.Spec) -> None:
    schedule.kind = ScheduleKind(spec.kind)
    schedule.cron, schedule.interval_seconds = spec.cron, spec.interval_seconds
    schedule.run_at, schedule.timezone = spec.run_at, spec.timezone
    schedule.start_at, schedule.end_at = spec.start_at, spec.end_at
    sun = spec.sun
    schedule.sun_event = None if sun is None else sun.event
    schedule.sun_offset_minutes = None if sun is None else sun.offset_minutes
    schedule.sun_latitude = None if sun is None else sun.latitude
    schedule.sun_longitude = None if sun is None else sun.longitude


def _merged_timing(schedule: Schedule, fields: dict[str, Any]) -> dict[str, Any]:
    """The schedule's timing fields with ``fields`` laid over them.

    Giving a value for one of cron/interval_seconds/run_at/sun switches to that kind and clears
    the others; giving None for the current kind's field leaves no kind (an error). The parts
    of ``sun`` given for a sun schedule change only those parts.
    """
    current = sun_of(schedule)
    merged = {name: getattr(schedule, name) for name in TIMING_FIELDS if name != "sun"}
    merged["sun"] = None if current is None else current.as_dict()
    given = {name: fields[name] for name in KIND_FIELDS if name in fields}
    if current is not None and isinstance(given.get("sun"), Mapping):
        given["sun"] = {**current.as_dict(), **given["sun"]}
    if any(value is not None for value in given.values()):
        merged.update(dict.fromkeys(KIND_FIELDS))
    merged.update(given)
    for name in ("timezone", "start_at", "end_at"):
        if name in fields:
            merged[name] = fields[name]
    return merged


def update_schedule(
    actor: User | None, schedule: Schedule, *, now: datetime | None = None, **fields: Any
) -> Schedule:
    """Change a schedule; the same field names as ``create_schedule`` (``device_id`` too).

    When a timing field changes the window must still fire, and the next due time is
    recomputed from ``now``; other changes leave it alone, so a pending due time still fires.
    """
    now = now or utcnow()
    if actor is not None:
        check_change(actor, schedule.device)
    if "device_id" in fields:
        fields["device"] = fields.pop("device_id")
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise InvalidInput(fields=dict.fromkeys(sorted(unknown), "Unknown field."))
    before = audit.snapshot(schedule, SCHEDULE_FIELDS)
    target = _resolve_device(actor, fields.pop("device")) if "device" in fields else None
    errors: dict[str, str] = {}
    clean = _clean_plain(fields, errors)
    merged = _merged_timing(schedule, fields)
    spec = _clean_timing(merged, schedule.created_at or now, errors)
    if spec is None or errors:
        raise InvalidInput(fields=errors)
    current = spec_of(schedule)
    timing_changed = spec != current
    enabling = clean.get("enabled", schedule.enabled) and not schedule.enabled
    if timing_changed:
        _first_fire(spec, now)
    if target is not None:
        schedule.device = target
    for name, value in clean.items():
        setattr(schedule, name, value)
    _apply_spec(schedule, spec)
    if not schedule.enabled:
        schedule.next_fire_at = None
    elif timing_changed or enabling:
        schedule.next_fire_at = timing.next_fire_after(spec, now)
    schedule.updated_at = now
    db.session.flush()
    changes = audit.diff(before, audit.snapshot(schedule, SCHEDULE_FIELDS))
    if changes:
        audit.record(actor, "update", schedule, changes)
    return schedule


def delete_schedule(actor: User | None, schedule: Schedule) -> deletes.Deletion:
    """Delete a schedule; its commands stay, no longer tied to it. Returns what went."""
    deletes.check_delete(actor, schedule)
    return deletes.remove(
        actor, schedule, audit.diff(audit.snapshot(schedule, SCHEDULE_FIELDS), {})
    )


def set_schedule_enabled(
    actor: User | None, schedule: Schedule, enabled: bool, now: datetime | None = None
) -> Schedule:
    """Enable or disable a schedule; no-op when already so.

    Disabling stops it at once. Enabling computes the next due time from ``now``: the
    disabled period is not caught up.
    """
    now = now or utcnow()
    if actor is not None:
        check_change(actor, schedule.device)
    enabled = bool(enabled)
    if schedule.enabled == enabled:
        return schedule
    before = audit.snapshot(schedule, ("enabled", "next_fire_at"))
    schedule.enabled = enabled
    schedule.next_fire_at = timing.next_fire_after(spec_of(schedule), now) if enabled else None
    schedule.updated_at = now
    db.session.flush()
    audit.record(
        actor,
        "enable" if enabled else "disable",
        schedule,
        audit.diff(before, audit.snapshot(schedule, ("enabled", "next_fire_at"))),
    )
    return schedule


def run_schedule_now(
    actor: User | None, schedule: Schedule, now: datetime | None = None
) -> Command:
    """Queue the schedule's command now (``source=schedule``), leaving its next due time.

    The command stands for no due time (``due_at`` is None), so it never collides with a
    scheduled fire.
    """
    now = now or utcnow()
    if actor is not None:
        check_change(actor, schedule.device)
    command = Command(
        device_id=schedule.device_id,
        action=schedule.action,
        payload=dict(schedule.payload or {}),
        status=CommandStatus.queued,
        source=CommandSource.schedule,
        schedule_id=schedule.id,
        due_at=None,
        created_by=actor,
        created_at=now,
        expires_at=now + timedelta(seconds=schedule.command_ttl_seconds),
    )
    db.session.add(command)
    # An expression, not read-modify-write: a scheduler may be counting at the same time.
    schedule.fire_count = Schedule.fire_count + 1
    schedule.last_fire_at = now
    db.session.flush()
    audit.record(actor, "run_now", schedule, {"command_id": [None, command.id]})
    return command


# ---- look-ups and presentation ------------------------------------------------------------


def get_schedule_for(user: User, schedule_id: int, *, for_change: bool = False) -> Schedule:
    """The schedule if ``user`` may see it (and change it, with ``for_change``).

    Raises NotFound when absent or out of reach, Forbidden when visible but read-only.
    """
    schedule = None
    if isinstance(schedule_id, int) and not isinstance(schedule_id, bool):
        schedule = db.session.get(Schedule, schedule_id)
    if schedule is None or not may_see_device(user, schedule.device):
        raise NotFound("No such schedule.")
    if for_change:
        check_change(user, schedule.device)
    return schedule


def next_fire_times(
    schedule: Schedule, count: int = 5, now: datetime | None = None
) -> list[datetime]:
    """The next ``count`` (1-100) due times strictly after ``now``, aware UTC.

    A disabled or finished schedule has none.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise InvalidInput(fields={"count": f"A whole number from 1 to {MAX_COUNT}."})
    if not schedule.enabled or schedule.next_fire_at is None:
        return []
    return timing.next_fire_times(spec_of(schedule), now or utcnow(), count)


def describe(schedule: Schedule) -> str:
    """The schedule's timing in words: "At 07:00 (Europe/Berlin)", "every 5 minutes", …"""
    if schedule.kind is ScheduleKind.cron:
        return f"{timing.describe_cron(schedule.cron)} ({schedule.timezone})"
    if schedule.kind is ScheduleKind.sun:
        return timing.describe_sun(timing.required(sun_of(schedule), "sun"))
    if schedule.kind is ScheduleKind.interval:
        return timing.describe_interval(
            timing.required(schedule.interval_seconds, "interval_seconds")
        )
    local = to_local(timing.required(schedule.run_at, "run_at"), schedule.timezone)
    shown = local.strftime("%Y-%m-%d %H:%M:%S" if local.second else "%Y-%m-%d %H:%M")
    return f"once at {shown} ({schedule.timezone})"


def _zone_or_utc(tz: str | None) -> tzinfo:
    try:
        return ZoneInfo(timing.validate_timezone(tz))
    except timing.TimingError:
        return UTC


@overload
def to_local(dt_utc: datetime, tz: str) -> datetime: ...
@overload
def to_local(dt_utc: None, tz: str) -> None: ...
def to_local(dt_utc: datetime | None, tz: str) -> datetime | None:
    """The instant as a naive wall-clock time in ``tz`` (UTC if ``tz`` is unknown)."""
    if dt_utc is None:
        return None
    if dt_utc.tzinfo is None:
        dt_utc = dt_utc.replace(tzinfo=UTC)
    return dt_utc.astimezone(_zone_or_utc(tz)).replace(tzinfo=None)


def from_local(naive_local: datetime | None, tz: str, field: str) -> datetime | None:
    """A wall-clock time in ``tz`` as an aware UTC instant (an aware value is just converted).

    Follows Python's ``fold=0``: a wall time skipped by a spring jump is read with the offset
    from before the jump (02:30 on a 02:00→03:00 night is 03:30 after it); a repeated autumn
    wall time is its first occurrence. Raises InvalidInput naming ``field`` (and ``timezone``)
    when the zone is unknown.
    """
    if naive_local is None:
        return None
    if not isinstance(naive_local, datetime):
        raise InvalidInput(fields={field: "A date and time."})
    if naive_local.tzinfo is not None:
        return naive_local.astimezone(UTC)
    try:
        name = timing.validate_timezone(tz)
    except timing.TimingError as exc:
        raise InvalidInput(
            fields={field: "Cannot be read in an unknown time zone.", "timezone": exc.message}
        ) from None
    return naive_local.replace(tzinfo=ZoneInfo(name), fold=0).astimezone(UTC)
