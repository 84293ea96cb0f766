"""Sun schedules: event times against published tables and an independent almanac, polar days,
daylight-saving changes, validation, the service and a scheduler pass."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from math import acos, asin, atan2, cos, degrees, radians, sin
from zoneinfo import ZoneInfo

import pytest
from astral import Observer
from astral import sun as astral_sun
from sqlalchemy import select

from portal.models import AuditEvent, Command, ScheduleKind
from portal.scheduling import runner, timing
from portal.scheduling.sun import event_on
from portal.services import schedules as service
from portal.services.errors import InvalidInput

UTC = UTC
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)

# name: (latitude, longitude, zone)
PLACES = {
    "Berlin": (52.52, 13.405, "Europe/Berlin"),
    "London": (51.5074, -0.1278, "Europe/London"),
    "New York": (40.7128, -74.006, "America/New_York"),
    "Sydney": (-33.8688, 151.2093, "Australia/Sydney"),
    "Quito": (-0.1807, -78.4678, "America/Guayaquil"),
    "Delhi": (28.6139, 77.209, "Asia/Kolkata"),
    "Tromsø": (69.6492, 18.9553, "Europe/Oslo"),
}
BERLIN = {"latitude": 52.52, "longitude": 13.405}


def local_event(event: str, place: str, day: date) -> datetime | None:
    latitude, longitude, zone = PLACES[place]
    instant = event_on(event, latitude, longitude, zone, day)
    return None if instant is None else instant.astimezone(ZoneInfo(zone))


def days_of(year: int, step: int = 1):
    day = date(year, 1, 1)
    while day.year == year:
        yield day
        day += timedelta(days=step)


# ---- published tables -----------------------------------------------------------------------

# Sunrise and sunset at the solstices of 2026 as timeanddate.com's yearly tables give them (they
# follow the USNO's definitions; the minutes barely change from year to year). Quoted from
# those tables without a network here, so test_events_agree_with_an_independent_almanac below
# backs every day of the year with a second, independent computation.
PUBLISHED = [
    ("Berlin", date(2026, 6, 21), "04:43", "21:33"),
    ("Berlin", date(2026, 12, 21), "08:15", "15:54"),
    ("London", date(2026, 6, 21), "04:43", "21:21"),
    ("London", date(2026, 12, 21), "08:04", "15:53"),
    ("New York", date(2026, 6, 21), "05:25", "20:31"),
    ("New York", date(2026, 12, 21), "07:17", "16:32"),
    ("Sydney", date(2026, 6, 21), "07:00", "16:54"),
    ("Sydney", date(2026, 12, 21), "05:41", "20:05"),
]


@pytest.mark.parametrize("place, day, sunrise, sunset", PUBLISHED)
def test_sunrise_and_sunset_match_published_tables_within_two_minutes(place, day, sunrise, sunset):
    for event, published in (("sunrise", sunrise), ("sunset", sunset)):
        computed = local_event(event, place, day)
        expected = datetime.combine(day, datetime.strptime(published, "%H:%M").time())
        expected = expected.replace(tzinfo=computed.tzinfo)
        assert abs(computed - expected) <= 2 * MINUTE, (place, event, computed)


# Tromsø: the polar night runs from 27 November to 15 January and the midnight sun from 20 May to
# 22 July (visittromso.no, timeanddate.com; the edges differ by a day between sources, so the
# first and last day of each are left out here).
@pytest.mark.parametrize(
    "first, last, events",
    [
        (date(2026, 11, 28), date(2027, 1, 14), ("sunrise", "sunset")),
        (date(2026, 5, 21), date(2026, 7, 21), ("sunrise", "sunset")),
    ],
    ids=["polar-night", "midnight-sun"],
)
def test_tromso_has_no_sunrise_or_sunset_in_polar_night_or_midnight_sun(first, last, events):
    day = first
    while day <= last:
        assert [local_event(event, "Tromsø", day) for event in events] == [None, None], day
        day += DAY


@pytest.mark.parametrize("day", [date(2026, 1, 20), date(2026, 5, 12), date(2026, 7, 30)])
def test_tromso_has_both_just_outside_them(day):
    assert None not in [local_event(event, "Tromsø", day) for event in ("sunrise", "sunset")]


# ---- an independent almanac -----------------------------------------------------------------

J2000 = datetime(2000, 1, 1, 12, tzinfo=UTC)


def almanac(event: str, latitude: float, longitude: float, day: date) -> datetime | None:
    """The event of the solar day around noon UTC of ``day`` by the Astronomical Almanac's
    low-precision sun (0.01° from 1950 to 2050), not astral's NOAA algorithm. Its horizon is
    the USNO's (the centre 50′ below it); civil twilight 6° below."""
    zenith = 90 + 50 / 60 if event in ("sunrise", "sunset") else 96.0
    rising = event in ("sunrise", "dawn")
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    at = midnight + timedelta(hours=12 - longitude / 15)
    for _ in range(5):  # the sun's place at the event's own time
        n = (at - J2000).total_seconds() / 86400
        mean_longitude = (280.460 + 0.9856474 * n) % 360
        anomaly = radians((357.528 + 0.9856003 * n) % 360)
        ecliptic = radians(mean_longitude + 1.915 * sin(anomaly) + 0.020 * sin(2 * anomaly))
        obliquity = radians(23.439 - 0.0000004 * n)
        ascension = degrees(atan2(cos(obliquity) * sin(ecliptic), cos(ecliptic))) % 360
        declination = asin(sin(obliquity) * sin(ecliptic))
        equation_minutes = 4 * ((mean_longitude - ascension + 180) % 360 - 180)
        cos_hour = (cos(radians(zenith)) - sin(radians(latitude)) * sin(declination)) / (
            cos(radians(latitude)) * cos(declination)
        )
        if not -1 <= cos_hour <= 1:
            return None
        hour_minutes = 4 * degrees(acos(cos_hour))
        noon = 720 - 4 * longitude - equation_minutes
        at = midnight + timedelta(minutes=noon - hour_minutes if rising else noon + hour_minutes)
    return at


def almanac_on(event: str, place: str, day: date) -> datetime | None:
    latitude, longitude, zone = PLACES[place]
    found = [
        at
        for shift in (-1, 0, 1)
        if (at := almanac(event, latitude, longitude, day + shift * DAY)) is not None
        and at.astimezone(ZoneInfo(zone)).date() == day
    ]
    return min(found, default=None)


@pytest.mark.parametrize("place", ["Berlin", "Sydney", "Quito", "Delhi"])
def test_events_agree_with_an_independent_almanac_every_day_of_a_year(place):
    latitude, longitude, zone = PLACES[place]
    for day in days_of(2026):
        for event in timing.SUN_EVENTS:
            ours = event_on(event, latitude, longitude, zone, day)
            theirs = almanac_on(event, place, day)
            assert abs(ours - theirs) <= MINUTE, (place, event, day, ours, theirs)


@pytest.mark.parametrize(
    "day",
    [date(2026, month, mday) for month in (2, 3, 4, 9, 10) for mday in (1, 15)]
    + [date(2026, 11, 1), date(2026, 8, 15)],
)
def test_tromso_agrees_with_the_almanac_away_from_the_polar_edges(day):
    for event in ("sunrise", "sunset"):
        assert abs(local_event(event, "Tromsø", day) - almanac_on(event, "Tromsø", day)) <= (
            2 * MINUTE
        )


# ---- astral ---------------------------------------------------------------------------------


@pytest.mark.parametrize("place", ["Berlin", "Sydney", "Quito"])
def test_events_are_astrals_to_the_second(place):
    latitude, longitude, zone = PLACES[place]
    observer = Observer(latitude, longitude)
    for day in days_of(2026, step=5):
        for event in timing.SUN_EVENTS:
            theirs = getattr(astral_sun, event)(observer, day, tzinfo=ZoneInfo(zone))
            ours = event_on(event, latitude, longitude, zone, day)
            assert abs(ours - theirs) <= timedelta(seconds=2), (place, event, day)


def test_a_sunrise_astrals_date_lookup_misses_is_found():
    # astral's sunrise() finds one sunrise per UTC date; Delhi's on 17 May falls just before
    # 00:00 UTC, on the same UTC date as the one of 16 May, and astral reports none.
    latitude, longitude, zone = PLACES["Delhi"]
    with pytest.raises(ValueError):
        astral_sun.sunrise(Observer(latitude, longitude), date(2026, 5, 17), tzinfo=zone)
    found = local_event("sunrise", "Delhi", date(2026, 5, 17))
    assert abs(found - almanac_on("sunrise", "Delhi", date(2026, 5, 17))) <= MINUTE
    assert found.strftime("%H:%M") == "05:29"


# ---- due times ------------------------------------------------------------------------------


def sun_spec(event="sunset", offset=0, zone="Europe/Berlin", place=BERLIN, **window):
    return timing.make_spec(
        sun={"event": event, "offset_minutes": offset, **place}, timezone=zone, **window
    )


def test_a_sun_schedule_fires_at_the_event_plus_the_offset_once_a_day():
    after = datetime(2026, 5, 4, 6, tzinfo=UTC)
    times = timing.next_fire_times(sun_spec(offset=-30), after, 3)
    assert times == [
        event_on("sunset", 52.52, 13.405, "Europe/Berlin", date(2026, 5, day)) - 30 * MINUTE
        for day in (4, 5, 6)
    ]


@pytest.mark.parametrize(
    "after, expected_day",
    [(-timedelta(seconds=1), 4), (timedelta(0), 5), (timedelta(seconds=1), 5)],
    ids=["one-second-before", "at", "one-second-after"],
)
def test_next_fire_is_strictly_after(after, expected_day):
    due = event_on("sunset", 52.52, 13.405, "Europe/Berlin", date(2026, 5, 4)) - 30 * MINUTE
    expected = event_on("sunset", 52.52, 13.405, "Europe/Berlin", date(2026, 5, expected_day))
    assert timing.next_fire_after(sun_spec(offset=-30), due + after) == expected - 30 * MINUTE


def test_an_offset_may_move_the_fire_into_the_day_before():
    # Sunrise − 12 h fires the evening before the sunrise it belongs to.
    spec = sun_spec("sunrise", offset=-720)
    sunrise = event_on("sunrise", 52.52, 13.405, "Europe/Berlin", date(2026, 5, 5))
    hour = timedelta(hours=1)
    assert timing.next_fire_after(spec, sunrise - 13 * hour) == sunrise - 12 * hour
    assert timing.next_fire_after(spec, sunrise - 12 * hour) > sunrise


def test_polar_night_days_are_skipped():
    tromso = {"latitude": 69.6492, "longitude": 18.9553}
    spec = sun_spec("sunrise", zone="Europe/Oslo", place=tromso)
    times = timing.next_fire_times(spec, datetime(2026, 11, 20, tzinfo=UTC), 9)
    local = [t.astimezone(ZoneInfo("Europe/Oslo")).date() for t in times]
    assert local[:7] == [date(2026, 11, day) for day in range(20, 27)]
    assert date(2027, 1, 14) <= local[7] <= date(2027, 1, 16)
    assert local[8] == local[7] + DAY


def test_midnight_sun_days_are_skipped():
    tromso = {"latitude": 69.6492, "longitude": 18.9553}
    spec = sun_spec("sunset", zone="Europe/Oslo", place=tromso)
    following = timing.next_fire_after(spec, datetime(2026, 6, 1, tzinfo=UTC))
    assert (
        date(2026, 7, 23)
        <= following.astimezone(ZoneInfo("Europe/Oslo")).date()
        <= date(2026, 7, 28)
    )


def test_a_day_is_a_day_in_the_schedules_zone():
    # Sydney's sunrise is the evening before in UTC: a schedule in Sydney's zone fires once on
    # each Sydney day, a schedule in UTC once on each UTC day, at the same instants.
    sydney = {"latitude": -33.8688, "longitude": 151.2093}
    after = datetime(2026, 5, 1, tzinfo=UTC)
    in_sydney = timing.next_fire_times(
        sun_spec("sunrise", zone="Australia/Sydney", place=sydney), after, 5
    )
    in_utc = timing.next_fire_times(sun_spec("sunrise", zone="UTC", place=sydney), after, 5)
    assert in_sydney == in_utc
    assert [t.astimezone(ZoneInfo("Australia/Sydney")).day for t in in_sydney] == [2, 3, 4, 5, 6]
    assert [t.day for t in in_utc] == [1, 2, 3, 4, 5]


def test_the_window_bounds_a_sun_schedule():
    start = datetime(2026, 5, 10, tzinfo=UTC)
    end = datetime(2026, 5, 12, tzinfo=UTC)
    times = timing.next_fire_times(
        sun_spec(start_at=start, end_at=end), datetime(2026, 5, 1, tzinfo=UTC), 5
    )
    assert [t.day for t in times] == [10, 11]


def test_missed_days_fire_only_the_latest_within_grace():
    spec = sun_spec()
    first = event_on("sunset", 52.52, 13.405, "Europe/Berlin", date(2026, 5, 4))
    fourth = event_on("sunset", 52.52, 13.405, "Europe/Berlin", date(2026, 5, 7))
    plan = timing.plan_fire(spec, first, fourth + timedelta(seconds=10), 300)
    assert (plan.fire_at, plan.skipped, plan.next_fire_at) == (
        fourth,
        3,
        event_on("sunset", 52.52, 13.405, "Europe/Berlin", date(2026, 5, 8)),
    )


# ---- daylight-saving time -------------------------------------------------------------------


@pytest.mark.parametrize(
    "days, wall_clock_jump",
    [
        ((date(2026, 3, 28), date(2026, 3, 29)), timedelta(hours=1)),  # clocks go forward
        ((date(2026, 10, 24), date(2026, 10, 25)), -timedelta(hours=1)),  # clocks go back
    ],
    ids=["spring", "autumn"],
)
def test_across_a_dst_change_the_wall_clock_jumps_and_the_instants_do_not(days, wall_clock_jump):
    spec = sun_spec()
    before, after = (
        timing.next_fire_after(spec, datetime.combine(day, datetime.min.time(), UTC))
        for day in days
    )
    berlin = ZoneInfo("Europe/Berlin")
    # The instant moves by a day and the usual minute or two of the season.
    assert DAY - 3 * MINUTE <= after - before <= DAY + 3 * MINUTE
    wall = [t.astimezone(berlin) for t in (before, after)]
    shift = datetime.combine(date.min, wall[1].time()) - datetime.combine(date.min, wall[0].time())
    assert abs(shift - wall_clock_jump) <= 3 * MINUTE
    assert [w.date() for w in wall] == list(days)


def test_next_fire_times_across_the_spring_change_give_one_a_day():
    times = timing.next_fire_times(sun_spec("sunrise"), datetime(2026, 3, 27, tzinfo=UTC), 4)
    assert [t.astimezone(ZoneInfo("Europe/Berlin")).day for t in times] == [27, 28, 29, 30]


# ---- validation and words -------------------------------------------------------------------


@pytest.mark.parametrize(
    "sun, fields",
    [
        ({"event": "noon", **BERLIN}, {"sun.event"}),
        ({"event": "sunset", "offset_minutes": 721, **BERLIN}, {"sun.offset_minutes"}),
        ({"event": "sunset", "offset_minutes": 1.5, **BERLIN}, {"sun.offset_minutes"}),
        ({"event": "sunset", "offset_minutes": True, **BERLIN}, {"sun.offset_minutes"}),
        ({"event": "sunset", "latitude": 90.5, "longitude": 0}, {"sun.latitude"}),
        ({"event": "sunset", "latitude": 0, "longitude": -180.01}, {"sun.longitude"}),
        ({"event": "sunset", "latitude": float("nan"), "longitude": 0}, {"sun.latitude"}),
        ({"event": "sunset", "latitude": 0, "longitude": float("inf")}, {"sun.longitude"}),
        (
            {"event": "sunset", "latitude": 10**400, "longitude": "13"},
            {"sun.latitude", "sun.longitude"},
        ),
        ({"event": "sunset"}, {"sun.latitude", "sun.longitude"}),
        ({"event": "sunset", "colour": "red", **BERLIN}, {"sun.colour"}),
        ("sunset", {"sun"}),
    ],
)
def test_bad_sun_settings_name_each_bad_part(sun, fields):
    with pytest.raises(timing.TimingError) as caught:
        timing.validate_sun(sun)
    assert set(caught.value.fields) == fields


@pytest.mark.parametrize(
    "sun", [{"event": "dawn", "latitude": 90, "longitude": -180, "offset_minutes": -720}]
)
def test_sun_settings_at_their_limits_are_accepted(sun):
    assert timing.validate_sun(sun) == timing.Sun("dawn", -720, 90.0, -180.0)


def test_sun_and_another_kind_together_are_refused():
    with pytest.raises(timing.TimingError) as caught:
        timing.make_spec(cron="0 7 * * *", sun={"event": "sunset", **BERLIN})
    assert caught.value.field == "sun"


@pytest.mark.parametrize(
    "sun, words",
    [
        (
            timing.Sun("sunset", -30, 52.52, 13.40),
            "Every day at sunset \u2212 30 min, 52.52° N 13.40° E",
        ),
        (timing.Sun("sunrise", 0, -33.8688, 151.2093), "Every day at sunrise, 33.87° S 151.21° E"),
        (timing.Sun("dusk", 15, 0.0, -78.4678), "Every day at dusk + 15 min, 0.00° N 78.47° W"),
    ],
)
def test_describe_sun(sun, words):
    assert timing.describe_sun(sun) == words


# ---- the service and a scheduler pass -------------------------------------------------------

NOW = datetime(2026, 5, 4, 6, 0, tzinfo=UTC)
SUNSET_4_MAY = event_on("sunset", 52.52, 13.405, "Europe/Berlin", date(2026, 5, 4))
SUNSET_5_MAY = event_on("sunset", 52.52, 13.405, "Europe/Berlin", date(2026, 5, 5))


def make(actor, device, **fields):
    values = {
        "name": "Greenhouse lights",
        "device": device,
        "action": "relay.on",
        "sun": {"event": "sunset", "offset_minutes": -30, **BERLIN},
        "timezone": "Europe/Berlin",
        "now": NOW,
    }
    values.update(fields)
    return service.create_schedule(actor, **values)


def test_create_a_sun_schedule(db, operator, device):
    schedule = make(operator, device)
    assert (
        schedule.kind,
        schedule.sun_event,
        schedule.sun_offset_minutes,
        schedule.sun_latitude,
        schedule.sun_longitude,
        schedule.next_fire_at,
    ) == (ScheduleKind.sun, "sunset", -30, 52.52, 13.405, SUNSET_4_MAY - 30 * MINUTE)
    assert service.describe(schedule) == "Every day at sunset \u2212 30 min, 52.52° N 13.40° E"
    [event] = db.session.execute(select(AuditEvent)).scalars().all()
    assert event.changes["sun_event"] == [None, "sunset"]


def test_create_names_each_bad_part_of_sun(operator, device):
    with pytest.raises(InvalidInput) as caught:
        make(operator, device, sun={"event": "noon", "latitude": 91, "longitude": 13.4})
    assert set(caught.value.fields) == {"sun.event", "sun.latitude"}


def test_update_changes_only_the_parts_of_sun_given(operator, device):
    schedule = make(operator, device)
    service.update_schedule(operator, schedule, sun={"offset_minutes": 15}, now=NOW)
    assert (schedule.sun_event, schedule.sun_offset_minutes, schedule.next_fire_at) == (
        "sunset",
        15,
        SUNSET_4_MAY + 15 * MINUTE,
    )


def test_update_to_cron_clears_the_sun_settings(operator, device):
    schedule = make(operator, device)
    service.update_schedule(operator, schedule, cron="0 7 * * *", now=NOW)
    assert (schedule.kind, schedule.sun_event, schedule.sun_latitude) == (
        ScheduleKind.cron,
        None,
        None,
    )


def test_switching_to_sun_needs_the_whole_of_it(operator, device):
    schedule = make(operator, device, sun=None, cron="0 7 * * *")
    with pytest.raises(InvalidInput) as caught:
        service.update_schedule(operator, schedule, sun={"event": "sunrise"}, now=NOW)
    assert set(caught.value.fields) == {"sun.latitude", "sun.longitude"}


def test_a_due_sun_schedule_fires_one_command_and_moves_to_the_next_days_event(db, device):
    schedule = make(None, device, sun={"event": "sunset", **BERLIN})
    db.session.commit()
    fired = [runner.tick(SUNSET_4_MAY - timedelta(seconds=1)), runner.tick(SUNSET_4_MAY)]
    [command] = db.session.execute(select(Command)).scalars().all()
    db.session.expire_all()
    assert (fired, command.due_at, command.schedule_id, schedule.next_fire_at) == (
        [0, 1],
        SUNSET_4_MAY,
        schedule.id,
        SUNSET_5_MAY,
    )
