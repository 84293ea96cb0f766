"""Pure time arithmetic for schedules: no database, no Flask, no clock (``now`` is an argument)."""
from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones


class TimingError(ValueError):
    """A schedule spec that cannot work; ``field`` names the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def validate_timezone(name: str | None, field: str = "timezone") -> str:
    """Return the IANA zone name, or raise TimingError naming ``field``."""
    name = (name or "UTC").strip()
    if name not in _zone_names():
        raise TimingError(field, f"Unknown time zone {name!r}; use an IANA name like Europe/Berlin.")
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
