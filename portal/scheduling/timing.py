"""Pure time arithmetic for schedules: no database, no Flask, no clock (``now`` is an argument).

Every instant going in or out is timezone-aware UTC. Cron expressions are evaluated in the
schedule's IANA zone by cronsim, which follows Debian cron's daylight-saving rules (see
SCHEDULING.md); intervals are exact elapsed time in UTC; a one-off is a single instant; a sun
schedule fires once a local day at sunrise, sunset, dawn or dusk (``portal.scheduling.sun``)
plus an offset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cron_descriptor import ExpressionDescriptor, Options
from cronsim import CronSim, CronSimError

from portal.scheduling import sun as sun_events

UTC = UTC
CRON = "cron"
INTERVAL = "interval"
ONCE = "once"
SUN = "sun"
KINDS = (CRON, INTERVAL, ONCE, SUN)
KIND_FIELDS = ("cron", "interval_seconds", "run_at", "sun")
EXACTLY_ONE = "Give exactly one of cron, interval_seconds, run_at, sun."
MAX_INTERVAL_SECONDS = 10 * 366 * 24 * 3600
SUN_EVENTS = sun_events.EVENTS
SUN_KEYS = ("event", "offset_minutes", "latitude", "longitude")
MAX_SUN_OFFSET_MINUTES = 12 * 60
# A place without its event for longer than a year never has it (the sun's year repeats).
SUN_SEARCH_DAYS = 370
# A scheduler down for a long time with a busy cron could make counting the missed due times
# slow; past this many the count stops (the fire decision stays exact, see plan_fire).
CATCH_UP_LIMIT = 10_000
_TINY = timedelta(microseconds=1)
_V = TypeVar("_V")


class TimingError(ValueError):
    """A schedule spec that cannot work; ``field`` names the (first) offending field.

    ``fields`` holds every bad field with its message, for a value with parts (``sun.latitude``).
    """

    def __init__(self, field: str, message: str, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.field = field
        self.message = message
        self.fields = fields or {field: message}


def validate_timezone(name: str | None, field: str = "timezone") -> str:
    """Return the IANA zone name, or raise TimingError naming ``field``."""
    name = (name or "UTC").strip()
    if name not in _zone_names():
        raise TimingError(
            field, f"Unknown time zone {name!r}; use an IANA name like Europe/Berlin."
        )
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimingError(field, f"Unknown time zone {name!r}.") from None
    return name


_ZONES: set[str] = set()


def _zone_names() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
        _ZONES.add("UTC")
    return _ZONES


def zone(name: str) -> tzinfo:
    """The tzinfo for an IANA name; plain UTC is ``timezone.utc`` (cronsim's fast path)."""
    return UTC if name == "UTC" else ZoneInfo(name)


# ---- validation -----------------------------------------------------------------------------


def validate_cron(expr: object, field: str = "cron") -> str:
    """Return the expression with its whitespace normalised, or raise TimingError.

    Five fields (minute hour day-of-month month day-of-week) with names, ranges, steps and
    lists; an expression that matches no date at all (``0 0 30 2 *``) is refused.
    """
    if not isinstance(expr, str) or not expr.strip():
        raise TimingError(field, "A cron expression of five fields, e.g. 0 7 * * 1-5.")
    normalised = " ".join(expr.split())
    if len(normalised.split(" ")) != 5:
        raise TimingError(
            field,
            "Five fields are needed: minute hour day-of-month month "
            "day-of-week (e.g. 0 7 * * 1-5).",
        )
    try:
        first = next(CronSim(normalised, datetime(2000, 1, 1, tzinfo=UTC)), None)
    except CronSimError as exc:
        raise TimingError(field, _cron_problem(normalised, exc)) from None
    if first is None:
        raise TimingError(field, "This cron expression never matches a date.")
    return normalised


def _cron_problem(expr: str, exc: CronSimError) -> str:
    minute, hour, day, _month, weekday = expr.split(" ")
    try:
        CronSim(" ".join((minute, hour, day, "*", weekday)), datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError:
        return f"Not a valid cron expression: {exc} (e.g. 0 7 * * 1-5)."
    return "No month in this expression has that day (like 30 February): it would never fire."


def validate_interval(value: object, field: str = "interval_seconds") -> int:
    """Return the interval in whole seconds (1 up to ten years), or raise TimingError."""
    seconds = whole_number_between(value, 1, MAX_INTERVAL_SECONDS)
    if seconds is None:
        raise TimingError(field, f"Whole seconds from 1 to {MAX_INTERVAL_SECONDS}.")
    return seconds


def number_between(value: object, low: float, high: float) -> int | float | None:
    """``value`` if it is a number (not a bool) from ``low`` to ``high``, else None.

    NaN and the infinities never are; a huge int is compared as it is, never made a float.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if low <= value <= high else None


def whole_number_between(value: object, low: int, high: int) -> int | None:
    """``value`` if it is an int (not a bool) from ``low`` to ``high``, else None."""
    return (
        value if isinstance(value, int) and number_between(value, low, high) is not None else None
    )


def validate_instant(value: object, field: str) -> datetime | None:
    """Return an aware instant in UTC (RFC 3339 strings accepted), None for None.

    A naive time is refused: without an offset it names no instant.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise TimingError(
                field, "An RFC 3339 time with an offset, e.g. 2026-05-01T07:00:00+02:00."
            ) from None
    if not isinstance(value, datetime):
        raise TimingError(field, "An RFC 3339 time with an offset.")
    if value.tzinfo is None or value.utcoffset() is None:
        raise TimingError(field, "The time needs an offset (e.g. Z or +02:00).")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Sun:
    """A sun schedule's event, its offset in minutes (negative: before it) and the place."""

    event: str
    offset_minutes: int
    latitude: float
    longitude: float

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SUN_KEYS}


def validate_sun(value: object, field: str = "sun") -> Sun:
    """Return the sun settings as a Sun, or raise TimingError naming every bad part.

    ``value`` is a mapping with ``event`` (sunrise, sunset, dawn, dusk), ``offset_minutes``
    (whole minutes within ±720; missing or None: 0), ``latitude`` (−90 to 90, north positive)
    and ``longitude`` (−180 to 180, east positive); other keys are refused. The parts are
    named ``sun.event`` and so on.
    """
    if isinstance(value, Sun):
        value = value.as_dict()
    if not isinstance(value, Mapping):
        raise TimingError(field, "An object with event, offset_minutes, latitude and longitude.")
    errors = {f"{field}.{key}": "Unknown field." for key in value if key not in SUN_KEYS}
    event = value.get("event")
    if event not in SUN_EVENTS:
        errors[f"{field}.event"] = "One of sunrise, sunset, dawn, dusk."
    minutes = value.get("offset_minutes")
    limit = MAX_SUN_OFFSET_MINUTES
    offset = whole_number_between(0 if minutes is None else minutes, -limit, limit)
    if offset is None:
        errors[f"{field}.offset_minutes"] = f"Whole minutes from -{limit} to {limit}."
    latitude = number_between(value.get("latitude"), -90, 90)
    if latitude is None:
        errors[f"{field}.latitude"] = "Degrees from -90 to 90 (north positive)."
    longitude = number_between(value.get("longitude"), -180, 180)
    if longitude is None:
        errors[f"{field}.longitude"] = "Degrees from -180 to 180 (east positive)."
    if errors or offset is None or latitude is None or longitude is None:
        first = next(iter(errors))
        raise TimingError(first, errors[first], errors)
    return Sun(str(event), offset, float(latitude), float(longitude))


def required(value: _V | None, field: str) -> _V:
    """Return a value the spec's kind needs, or raise TimingError naming ``field``.

    ``make_spec`` always sets it; a spec or row read back from storage is unvalidated.
    """
    if value is None:
        raise TimingError(field, f"This kind of schedule needs {field}.")
    return value


@dataclass(frozen=True, slots=True)
class Spec:
    """When a schedule is due: one kind, its zone and its window (instants in UTC).

    ``anchor`` is the interval kind's origin: due times are ``anchor + k * interval``.
    """

    kind: str
    cron: str | None = None
    interval_seconds: int | None = None
    run_at: datetime | None = None
    sun: Sun | None = None
    timezone: str = "UTC"
    start_at: datetime | None = None
    end_at: datetime | None = None
    anchor: datetime | None = None


def make_spec(
    *,
    cron: object = None,
    interval_seconds: object = None,
    run_at: object = None,
    sun: object = None,
    timezone: str | None = "UTC",
    start_at: object = None,
    end_at: object = None,
    anchor: datetime | None = None,
) -> Spec:
    """Validate one kind's fields into a Spec; raise TimingError naming the first bad field.

    Exactly one of ``cron``, ``interval_seconds``, ``run_at``, ``sun`` must be given. An
    interval's anchor is ``start_at`` when set, else ``anchor`` (the creation time), kept to
    whole seconds.
    """
    values = (cron, interval_seconds, run_at, sun)
    given = [name for name, value in zip(KIND_FIELDS, values, strict=True) if value is not None]
    if len(given) != 1:
        field = given[1] if len(given) > 1 else "cron"
        raise TimingError(field, EXACTLY_ONE)
    tz = validate_timezone(timezone)
    start = validate_instant(start_at, "start_at")
    end = validate_instant(end_at, "end_at")
    if start is not None and end is not None and end <= start:
        raise TimingError("end_at", "end_at must be after start_at.")
    if cron is not None:
        return Spec(CRON, cron=validate_cron(cron), timezone=tz, start_at=start, end_at=end)
    if sun is not None:
        return Spec(SUN, sun=validate_sun(sun), timezone=tz, start_at=start, end_at=end)
    if interval_seconds is not None:
        origin = start if start is not None else validate_instant(anchor, "start_at")
        if origin is None:
            raise TimingError("start_at", "An interval needs an anchor (start_at).")
        if start is None:
            origin = origin.replace(microsecond=0)
        return Spec(
            INTERVAL,
            interval_seconds=validate_interval(interval_seconds),
            timezone=tz,
            start_at=start,
            end_at=end,
            anchor=origin,
        )
    return Spec(
        ONCE, run_at=validate_instant(run_at, "run_at"), timezone=tz, start_at=start, end_at=end
    )


def check_fires(spec: Spec, now: datetime) -> datetime:
    """Return the first due time after ``now``; raise TimingError when there is none.

    The error names the field a person would change: ``run_at`` for a one-off, ``end_at``
    when the window closes first, else ``cron`` or ``sun``.
    """
    first = next_fire_after(spec, now)
    if first is not None:
        return first
    if spec.kind == ONCE:
        if required(spec.run_at, "run_at") <= now:
            raise TimingError("run_at", "This time has passed; a one-off must be in the future.")
        raise TimingError("run_at", "run_at lies outside the start_at/end_at window.")
    if spec.end_at is not None:
        if spec.end_at <= now:
            raise TimingError("end_at", "end_at has passed; the schedule could never fire.")
        raise TimingError(
            "end_at", "The window ends before the first due time; it would never fire."
        )
    if spec.kind == SUN:
        raise TimingError("sun", "The sun never reaches this event here: it would never fire.")
    raise TimingError("cron", "This cron expression never fires.")


# ---- due times ------------------------------------------------------------------------------


def next_fire_after(spec: Spec, after: datetime) -> datetime | None:
    """The first due time strictly after ``after`` inside the window, or None (finished).

    The window is ``start_at`` inclusive, ``end_at`` exclusive.
    """
    if spec.start_at is not None and after < spec.start_at:
        # Start is inclusive: look from just before it.
        after = spec.start_at - _TINY
    if spec.kind == CRON:
        due = _next_cron(required(spec.cron, "cron"), spec.timezone, after)
    elif spec.kind == INTERVAL:
        due = _next_interval(
            required(spec.anchor, "start_at"),
            required(spec.interval_seconds, "interval_seconds"),
            after,
        )
    elif spec.kind == SUN:
        due = _next_sun(required(spec.sun, "sun"), spec.timezone, after)
    else:
        run_at = required(spec.run_at, "run_at")
        due = run_at if run_at > after else None
    if due is None or (spec.end_at is not None and due >= spec.end_at):
        return None
    if spec.start_at is not None and due < spec.start_at:
        return None
    return due


def next_fire_times(spec: Spec, after: datetime, count: int = 5) -> list[datetime]:
    """Up to ``count`` due times strictly after ``after``, ascending, in UTC."""
    times: list[datetime] = []
    current = after
    while len(times) < count:
        due = next_fire_after(spec, current)
        if due is None:
            break
        times.append(due)
        current = due
    return times


def _next_interval(anchor: datetime, seconds: int, after: datetime) -> datetime:
    if after < anchor:
        return anchor
    step = timedelta(seconds=seconds)
    return anchor + ((after - anchor) // step + 1) * step


def _next_cron(expr: str, tz_name: str, after: datetime) -> datetime | None:
    it = CronSim(expr, after.astimezone(zone(tz_name)))
    # For fixed-time jobs cronsim walks naive local time, so in an autumn repeated hour it can
    # answer the first pass of a wall time that is already behind ``after`` (Debian: a fixed
    # time fires once, the first time); skip such answers.
    for local in it:
        due = local.astimezone(UTC)
        if due > after:
            return due
    return None


def _next_sun(sun: Sun, tz_name: str, after: datetime) -> datetime | None:
    """The first event plus offset after ``after``: one a local day, skipping days without it.

    The event is an instant, so daylight-saving changes need no rule of their own.
    """
    offset = timedelta(minutes=sun.offset_minutes)
    try:
        # The event to fire after ``after`` is after ``after - offset``: start on that local day.
        day = (after - offset).astimezone(zone(tz_name)).date()
        for _ in range(SUN_SEARCH_DAYS):
            event = sun_events.event_on(sun.event, sun.latitude, sun.longitude, tz_name, day)
            if event is not None and event + offset > after:
                return event + offset
            day += timedelta(days=1)
    except OverflowError:  # the calendar ends (year 9999) before the next event
        return None
    return None


def _latest_due(
    spec: Spec, due: datetime, now: datetime, grace_from: datetime
) -> tuple[datetime, int]:
    """The latest due time <= ``now`` from ``due`` on, and how many due times precede it."""
    if spec.kind == ONCE:
        return due, 0
    if spec.kind == INTERVAL:
        step = timedelta(seconds=required(spec.interval_seconds, "interval_seconds"))
        last = now if spec.end_at is None else min(now, spec.end_at - _TINY)
        count = max(0, (last - due) // step)
        return due + count * step, count
    latest, passed = due, 0
    while passed < CATCH_UP_LIMIT:
        following = next_fire_after(spec, latest)
        if following is None or following > now:
            return latest, passed
        latest, passed = following, passed + 1
    # Too many to count: only a due time inside the grace window can still fire, so look there.
    probe = max(latest, grace_from - _TINY)
    while (following := next_fire_after(spec, probe)) is not None and following <= now:
        latest = probe = following
    return latest, passed


@dataclass(frozen=True, slots=True)
class FirePlan:
    """What one pass does with a due schedule."""

    fire_at: datetime | None  # the due time to fire now, or None (missed beyond grace)
    skipped: int  # due times passed over without a command
    next_fire_at: datetime | None  # the first due time strictly after now, or None (finished)


@lru_cache(maxsize=4096)
def plan_fire(spec: Spec, due: datetime, now: datetime, grace_seconds: int) -> FirePlan:
    """Decide a pass at ``now`` for a schedule whose stored due time ``due`` is <= ``now``.

    Only the most recent missed due time may fire, and only when ``now - due_time`` is at most
    ``grace_seconds``; every other missed due time counts as skipped (never a burst).
    """
    grace_from = now - timedelta(seconds=grace_seconds)
    latest, passed = _latest_due(spec, due, now, grace_from)
    if latest >= grace_from:
        fire_at, skipped = latest, passed
    else:
        fire_at, skipped = None, passed + 1
    return FirePlan(fire_at, skipped, next_fire_after(spec, now))


# ---- words ----------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def describe_cron(expr: str) -> str:
    """The cron expression in English words, 24-hour clock (e.g. "At 07:00, Monday through
    Friday"); the expression itself when it cannot be described."""
    options = Options()
    options.use_24hour_time_format = True
    try:
        return ExpressionDescriptor(expr, options).get_description()
    except Exception:  # cron_descriptor raises several private types; words are optional
        return expr


def describe_interval(seconds: int) -> str:
    """``every 5 minutes``, ``every hour``, ``every 90 seconds``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            n = seconds // size
            return f"every {unit}" if n == 1 else f"every {n} {unit}s"
    return f"every {seconds} seconds"  # pragma: no cover - size 1 always divides


def describe_sun(sun: Sun) -> str:
    """``Every day at sunset − 30 min, 52.52° N 13.40° E``."""
    when = sun.event
    if sun.offset_minutes:
        sign = "+" if sun.offset_minutes > 0 else "\u2212"
        when = f"{when} {sign} {abs(sun.offset_minutes)} min"
    north = "N" if sun.latitude >= 0 else "S"
    east = "E" if sun.longitude >= 0 else "W"
    place = f"{abs(sun.latitude):.2f}° {north} {abs(sun.longitude):.2f}° {east}"
    return f"Every day at {when}, {place}"
