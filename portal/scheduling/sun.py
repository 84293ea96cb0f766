"""Sunrise, sunset, dawn and dusk per local day, from astral's position of the sun.

Pure arithmetic like ``timing``: no database, no Flask, no clock. Instants are aware UTC.

astral's ``sunrise(observer, date)`` works per UTC date and finds one event in it, so where the
event passes 00:00 UTC one day a year has none (Delhi's sunrise on 17 May, Kolkata's on 1 April,
Tromsø's in the weeks before the midnight sun). Here each event is found from its own solar
noon instead: the sun only climbs from solar midnight to noon and only sinks after it, so the
event is the one instant in that half day where astral's elevation of the sun crosses the
event's angle. The angles are astral's own, so the times agree with its ``sunrise()`` within
seconds on the days it finds.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from astral import Depression, Observer, refraction_at_zenith
from astral.sun import SUN_APPARENT_RADIUS, elevation, noon

EVENTS = ("sunrise", "sunset", "dawn", "dusk")
# The true elevation of the sun's centre at each event, refraction taken off as astral's
# sunrise() and dawn() do: sunrise and sunset when its upper edge seems to touch the horizon,
# dawn and dusk at civil twilight (6° below it).
_HORIZON = -(SUN_APPARENT_RADIUS + refraction_at_zenith(90.0 + SUN_APPARENT_RADIUS))
_CIVIL = -(Depression.CIVIL.value + refraction_at_zenith(90.0 + Depression.CIVIL.value))
ANGLES = {"sunrise": _HORIZON, "sunset": _HORIZON, "dawn": _CIVIL, "dusk": _CIVIL}
RISING = frozenset({"sunrise", "dawn"})
_HALF_DAY_SECONDS = 12 * 3600
# Which solar days can hold an event of one local day: zones run from UTC−12 to UTC+14 and a
# place's solar noon from 12 h before to 12 h after 12:00 UTC.
_NEAR_DAYS = (-2, -1, 0, 1, 2)


@lru_cache(maxsize=8192)
def event_on(
    event: str, latitude: float, longitude: float, tz_name: str, day: date
) -> datetime | None:
    """The instant of ``event`` on the local ``day`` in zone ``tz_name``, to the whole second.

    None on a day without it: polar day or night, or the rare day the event skips because it
    drifts across local midnight. A day that holds two (it drifts back) gives the first.
    """
    zone = ZoneInfo(tz_name)
    found = [
        instant
        for shift in _NEAR_DAYS
        if (instant := _event_of_solar_day(event, latitude, longitude, day + timedelta(shift)))
        is not None
        and instant.astimezone(zone).date() == day
    ]
    return min(found, default=None)


@lru_cache(maxsize=8192)
def _event_of_solar_day(
    event: str, latitude: float, longitude: float, utc_date: date
) -> datetime | None:
    """The event in the half day before (rising) or after (setting) astral's solar noon."""
    observer = Observer(latitude, longitude)
    midday = noon(observer, utc_date)
    angle = ANGLES[event]
    rising = event in RISING

    def risen(seconds: int) -> bool:
        """Whether the sun is at or above the angle ``seconds`` after noon (before: negative)."""
        at = midday + timedelta(seconds=seconds)
        return elevation(observer, at, with_refraction=False) >= angle

    # Bisect whole seconds: the event is the first second ``hi`` on its far side (rising: the
    # sun below at ``lo``, at or above at ``hi``; setting: the other way round).
    lo, hi = (-_HALF_DAY_SECONDS, 0) if rising else (0, _HALF_DAY_SECONDS)
    if risen(lo) == rising or risen(hi) != rising:
        return None  # the sun stays above or below the angle all that half day
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if risen(mid) == rising:
            hi = mid
        else:
            lo = mid
    return midday + timedelta(seconds=hi)
