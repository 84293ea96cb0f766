"""The pure time arithmetic: SCHEDULING.md's table, due-time boundaries, windows, misfires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.scheduling import timing
from portal.scheduling.timing import Spec, TimingError, make_spec, next_fire_after, plan_fire

UTC = UTC
S = timedelta(seconds=1)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def cron(expr: str, tz: str = "UTC", **window) -> Spec:
    return make_spec(cron=expr, timezone=tz, **window)


def local(due: datetime, tz: str) -> str:
    at = due.astimezone(ZoneInfo(tz))
    return f"{at:%d %b %H:%M} {at.tzname()}"


# ---- SCHEDULING.md's table, row by row ------------------------------------------------------

TABLE = [
    pytest.param(
        "30 2 * * *",
        "Europe/Berlin",
        "2026-03-27T12:00",
        ["28 Mar 02:30 CET", "29 Mar 03:00 CEST", "30 Mar 02:30 CEST"],
        ["2026-03-28T01:30", "2026-03-29T01:00", "2026-03-30T00:30"],
        id="fixed-time-spring-gap-fires-once-after-the-jump",
    ),
    pytest.param(
        "30 2 * * *",
        "Europe/Berlin",
        "2026-10-24T12:00",
        ["25 Oct 02:30 CEST", "26 Oct 02:30 CET"],
        ["2026-10-25T00:30", "2026-10-26T01:30"],
        id="fixed-time-autumn-repeat-fires-once-the-first-time",
    ),
    pytest.param(
        "0 9 * * *",
        "America/New_York",
        "2026-10-30T18:00",
        ["31 Oct 09:00 EDT", "01 Nov 09:00 EST"],
        ["2026-10-31T13:00", "2026-11-01T14:00"],
        id="wall-clock-stays-across-autumn-change",
    ),
    pytest.param(
        "0 2 * * *",
        "America/New_York",
        "2026-03-07T12:00",
        ["08 Mar 03:00 EDT", "09 Mar 02:00 EDT"],
        ["2026-03-08T07:00", "2026-03-09T06:00"],
        id="fixed-time-in-new-york-spring-gap",
    ),
    pytest.param(
        "*/30 * * * *",
        "Europe/Berlin",
        "2026-03-29T00:15",
        ["29 Mar 01:30 CET", "29 Mar 03:00 CEST", "29 Mar 03:30 CEST"],
        ["2026-03-29T00:30", "2026-03-29T01:00", "2026-03-29T01:30"],
        id="wildcard-skips-times-that-do-not-exist",
    ),
    pytest.param(
        "*/30 * * * *",
        "Europe/Berlin",
        "2026-10-24T23:45",
        [
            "25 Oct 02:00 CEST",
            "25 Oct 02:30 CEST",
            "25 Oct 02:00 CET",
            "25 Oct 02:30 CET",
            "25 Oct 03:00 CET",
        ],
        [
            "2026-10-25T00:00",
            "2026-10-25T00:30",
            "2026-10-25T01:00",
            "2026-10-25T01:30",
            "2026-10-25T02:00",
        ],
        id="wildcard-fires-in-both-passes-of-the-repeated-hour",
    ),
]


@pytest.mark.parametrize("expr, tz, after, local_times, utc_times", TABLE)
def test_table_row_gives_the_documented_utc_times(expr, tz, after, local_times, utc_times):
    times = timing.next_fire_times(cron(expr, tz), utc(after), len(utc_times))
    assert times == [utc(t) for t in utc_times]


@pytest.mark.parametrize("expr, tz, after, local_times, utc_times", TABLE)
def test_table_row_gives_the_documented_local_times(expr, tz, after, local_times, utc_times):
    times = timing.next_fire_times(cron(expr, tz), utc(after), len(local_times))
    assert [local(t, tz) for t in times] == local_times


@pytest.mark.parametrize(
    "after", ["2026-10-25T00:30", "2026-10-25T00:45", "2026-10-25T01:15", "2026-10-25T01:30"]
)
def test_fixed_time_in_repeated_hour_does_not_fire_on_second_pass(after):
    spec = cron("30 2 * * *", "Europe/Berlin")
    assert next_fire_after(spec, utc(after)) == utc("2026-10-26T01:30")


def test_fixed_time_due_times_never_collapse_into_one_instant():
    spec = cron("0,30 2,3 * * *", "Europe/Berlin")
    times = timing.next_fire_times(spec, utc("2026-03-28T23:00"), 4)
    assert times == [
        utc("2026-03-29T01:00"),
        utc("2026-03-29T01:30"),
        utc("2026-03-30T00:00"),
        utc("2026-03-30T00:30"),
    ]


# ---- each side of a due time ----------------------------------------------------------------

DUE = utc("2026-05-04T07:00:00")


@pytest.mark.parametrize(
    "after, expected",
    [
        (DUE - S, DUE),
        (DUE, DUE + timedelta(days=1)),
        (DUE + S, DUE + timedelta(days=1)),
    ],
    ids=["one-second-before", "at", "one-second-after"],
)
def test_cron_next_due_is_strictly_after(after, expected):
    assert next_fire_after(cron("0 7 * * *"), after) == expected


@pytest.mark.parametrize(
    "after, expected",
    [
        (DUE - S, DUE),
        (DUE, DUE + timedelta(minutes=5)),
        (DUE + S, DUE + timedelta(minutes=5)),
    ],
    ids=["one-second-before", "at", "one-second-after"],
)
def test_interval_next_due_is_strictly_after(after, expected):
    spec = make_spec(interval_seconds=300, anchor=DUE - timedelta(hours=1))
    assert next_fire_after(spec, after) == expected


@pytest.mark.parametrize(
    "after, expected",
    [
        (DUE - S, DUE),
        (DUE, None),
        (DUE + S, None),
    ],
    ids=["one-second-before", "at", "one-second-after"],
)
def test_one_off_next_due_is_strictly_after(after, expected):
    assert next_fire_after(make_spec(run_at=DUE), after) == expected


def test_interval_anchor_is_the_first_due_time_when_in_the_future():
    spec = make_spec(interval_seconds=60, start_at=DUE)
    assert next_fire_after(spec, DUE - timedelta(days=3)) == DUE


def test_interval_without_start_is_anchored_on_whole_seconds():
    spec = make_spec(interval_seconds=60, anchor=DUE + timedelta(microseconds=250_000))
    assert next_fire_after(spec, DUE) == DUE + timedelta(seconds=60)


def test_interval_is_exact_elapsed_time_across_a_dst_jump():
    spec = make_spec(
        interval_seconds=3600, timezone="Europe/Berlin", start_at=utc("2026-03-29T00:30")
    )
    times = timing.next_fire_times(spec, utc("2026-03-29T00:00"), 3)
    assert times == [utc("2026-03-29T00:30"), utc("2026-03-29T01:30"), utc("2026-03-29T02:30")]


# ---- the window -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start, expected",
    [
        (DUE, DUE),
        (DUE + S, DUE + timedelta(days=1)),
        (DUE - S, DUE),
    ],
    ids=["start-at-due-time-is-inclusive", "start-after-due-time", "start-before-due-time"],
)
def test_cron_start_at_is_inclusive(start, expected):
    assert next_fire_after(cron("0 7 * * *", start_at=start), DUE - timedelta(days=2)) == expected


@pytest.mark.parametrize(
    "end, expected",
    [
        (DUE, None),
        (DUE + S, DUE),
        (DUE - S, None),
    ],
    ids=["end-at-due-time-is-exclusive", "end-after-due-time", "end-before-due-time"],
)
def test_cron_end_at_is_exclusive(end, expected):
    spec = cron("0 7 * * *", end_at=end)
    assert next_fire_after(spec, DUE - timedelta(hours=1)) == expected


def test_one_off_outside_window_never_fires():
    spec = make_spec(run_at=DUE, start_at=DUE + S)
    assert next_fire_after(spec, DUE - timedelta(days=1)) is None


def test_next_fire_times_stop_at_the_end_of_the_window():
    spec = make_spec(interval_seconds=60, start_at=DUE, end_at=DUE + timedelta(minutes=3))
    assert timing.next_fire_times(spec, DUE - S, 10) == [DUE, DUE + 60 * S, DUE + 120 * S]


# ---- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("expr", ["0 0 30 2 *", "0 0 31 4,6 *", "0 0 31 feb *"])
def test_impossible_date_is_refused_as_never_firing(expr):
    with pytest.raises(TimingError, match="never fire") as caught:
        timing.validate_cron(expr)
    assert caught.value.field == "cron"


@pytest.mark.parametrize(
    "expr",
    [
        "61 * * * *",
        "* * * *",
        "0 * * * * *",
        "",
        "  ",
        None,
        "every day",
        "0 25 * * *",
        "5-1 * * * *",
        "*/0 * * * *",
        7,
    ],
)
def test_invalid_cron_is_refused_naming_cron(expr):
    with pytest.raises(TimingError) as caught:
        timing.validate_cron(expr)
    assert caught.value.field == "cron"


@pytest.mark.parametrize(
    "expr, normalised",
    [
        ("0 7 * * 1-5", "0 7 * * 1-5"),
        ("  0   7 * *\tmon-fri ", "0 7 * * mon-fri"),
        ("*/15 9-17 1,15 jan-jun sun", "*/15 9-17 1,15 jan-jun sun"),
    ],
)
def test_valid_cron_is_normalised(expr, normalised):
    assert timing.validate_cron(expr) == normalised


@pytest.mark.parametrize("value", [0, -5, 1.5, "60", True, None, timing.MAX_INTERVAL_SECONDS + 1])
def test_invalid_interval_is_refused(value):
    with pytest.raises(TimingError) as caught:
        timing.validate_interval(value)
    assert caught.value.field == "interval_seconds"


@pytest.mark.parametrize("value", [datetime(2026, 5, 1, 7), "2026-05-01T07:00:00", "tomorrow", 5])
def test_run_at_without_offset_is_refused(value):
    with pytest.raises(TimingError) as caught:
        timing.validate_instant(value, "run_at")
    assert caught.value.field == "run_at"


def test_instant_with_offset_becomes_utc():
    assert timing.validate_instant("2026-05-01T09:00:00+02:00", "run_at") == utc("2026-05-01T07:00")


@pytest.mark.parametrize(
    "kinds",
    [{}, {"cron": "* * * * *", "interval_seconds": 60}, {"cron": "* * * * *", "run_at": DUE}],
)
def test_exactly_one_kind_is_required(kinds):
    with pytest.raises(TimingError, match="exactly one of cron, interval_seconds, run_at"):
        make_spec(anchor=DUE, **kinds)


def test_unknown_timezone_is_refused():
    with pytest.raises(TimingError) as caught:
        make_spec(cron="0 7 * * *", timezone="Mars/Olympus")
    assert caught.value.field == "timezone"


def test_end_before_start_is_refused():
    with pytest.raises(TimingError) as caught:
        make_spec(cron="0 7 * * *", start_at=DUE, end_at=DUE)
    assert caught.value.field == "end_at"


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"cron": "0 7 * * *", "start_at": DUE + S, "end_at": DUE + timedelta(hours=2)}, "end_at"),
        ({"cron": "0 7 * * *", "end_at": DUE - timedelta(days=1)}, "end_at"),
        ({"run_at": DUE - S}, "run_at"),
        ({"run_at": DUE + timedelta(hours=1), "end_at": DUE + timedelta(minutes=30)}, "run_at"),
        ({"interval_seconds": 3600, "start_at": DUE, "end_at": DUE - timedelta(hours=1)}, "end_at"),
    ],
    ids=[
        "window-closes-before-first-due",
        "end-in-the-past",
        "one-off-in-the-past",
        "one-off-after-end",
        "end-before-start",
    ],
)
def test_window_that_never_fires_is_refused(spec, field):
    with pytest.raises(TimingError) as caught:
        timing.check_fires(make_spec(anchor=DUE, **spec), DUE)
    assert caught.value.field == field


def test_check_fires_returns_the_first_due_time():
    assert timing.check_fires(cron("0 7 * * *"), DUE - S) == DUE


# ---- misfires -------------------------------------------------------------------------------

HOURLY = make_spec(interval_seconds=3600, start_at=utc("2026-05-04T00:00"))


@pytest.mark.parametrize(
    "late, fires",
    [
        (300 * S, True),
        (301 * S, False),
        (0 * S, True),
    ],
    ids=["at-the-grace-edge", "one-second-past-grace", "on-time"],
)
def test_single_due_time_fires_only_within_grace(late, fires):
    plan = plan_fire(HOURLY, DUE, DUE + late, 300)
    assert (plan.fire_at, plan.skipped) == ((DUE, 0) if fires else (None, 1))


def test_missed_due_times_fire_only_the_most_recent_and_count_the_rest():
    now = DUE + timedelta(hours=3, minutes=2)
    plan = plan_fire(HOURLY, DUE, now, 300)
    assert (plan.fire_at, plan.skipped, plan.next_fire_at) == (
        DUE + timedelta(hours=3),
        3,
        DUE + timedelta(hours=4),
    )


def test_missed_due_times_beyond_grace_are_all_skipped():
    now = DUE + timedelta(hours=3, minutes=30)
    plan = plan_fire(HOURLY, DUE, now, 300)
    assert (plan.fire_at, plan.skipped) == (None, 4)


def test_missed_cron_due_times_fire_the_most_recent_one():
    spec = cron("*/10 * * * *")
    plan = plan_fire(spec, DUE, DUE + timedelta(minutes=41), 300)
    assert (plan.fire_at, plan.skipped, plan.next_fire_at) == (
        DUE + timedelta(minutes=40),
        4,
        DUE + timedelta(minutes=50),
    )


def test_one_off_missed_beyond_grace_is_skipped_and_finished():
    plan = plan_fire(make_spec(run_at=DUE), DUE, DUE + timedelta(minutes=10), 300)
    assert plan == timing.FirePlan(fire_at=None, skipped=1, next_fire_at=None)


def test_misfire_counting_gives_up_past_the_limit_but_still_fires(monkeypatch):
    monkeypatch.setattr(timing, "CATCH_UP_LIMIT", 10)
    spec = cron("* * * * *")
    now = DUE + timedelta(hours=2, seconds=30)
    plan = plan_fire.__wrapped__(spec, DUE, now, 60)
    assert (plan.fire_at, plan.skipped) == (DUE + timedelta(hours=2), 10)


def test_interval_misfire_never_fires_at_or_after_end():
    spec = make_spec(interval_seconds=60, start_at=DUE, end_at=DUE + timedelta(minutes=2))
    plan = plan_fire(spec, DUE, DUE + timedelta(minutes=10), 3600)
    assert (plan.fire_at, plan.skipped, plan.next_fire_at) == (DUE + 60 * S, 1, None)


# ---- words ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr, words",
    [
        ("0 7 * * *", "At 07:00"),
        ("*/5 * * * *", "Every 5 minutes"),
        ("0 9 * * 1-5", "At 09:00, Monday through Friday"),
    ],
)
def test_describe_cron_in_words(expr, words):
    assert timing.describe_cron(expr) == words


@pytest.mark.parametrize(
    "seconds, words",
    [
        (1, "every second"),
        (90, "every 90 seconds"),
        (300, "every 5 minutes"),
        (3600, "every hour"),
        (172800, "every 2 days"),
    ],
)
def test_describe_interval_in_words(seconds, words):
    assert timing.describe_interval(seconds) == words


# ---- properties -----------------------------------------------------------------------------

EXPRESSIONS = [
    "* * * * *",
    "*/7 * * * *",
    "30 2 * * *",
    "0 9 * * 1-5",
    "15 */3 * * *",
    "0 0 29 2 *",
    "0,30 1-3 * * *",
    "45 23 L * *",
    "0 12 1 jan,jul *",
]
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Santiago",
]
instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)


@settings(deadline=None, max_examples=150)
@given(expr=st.sampled_from(EXPRESSIONS), tz=st.sampled_from(ZONES), after=instants)
def test_cron_due_times_are_strictly_increasing_and_after(expr, tz, after):
    times = timing.next_fire_times(cron(expr, tz), after, 8)
    assert times and all(a < b for a, b in zip([after] + times, times, strict=False))


@settings(deadline=None, max_examples=150)
@given(
    expr=st.sampled_from(EXPRESSIONS),
    tz=st.sampled_from(ZONES),
    after=instants,
    start_offset=st.integers(-86400 * 3, 86400 * 3),
    length=st.integers(1, 86400 * 60),
)
def test_cron_due_times_stay_inside_the_window(expr, tz, after, start_offset, length):
    start = after + timedelta(seconds=start_offset)
    end = start + timedelta(seconds=length)
    times = timing.next_fire_times(cron(expr, tz, start_at=start, end_at=end), after, 8)
    assert all(start <= t < end and t > after for t in times)


@settings(deadline=None, max_examples=150)
@given(expr=st.sampled_from(EXPRESSIONS), tz=st.sampled_from(ZONES), after=instants)
def test_cron_due_times_do_not_depend_on_where_the_search_starts(expr, tz, after):
    spec = cron(expr, tz)
    times = timing.next_fire_times(spec, after, 6)
    assert timing.next_fire_times(spec, times[0], 5) == times[1:]


@settings(deadline=None, max_examples=200)
@given(anchor=instants, seconds=st.integers(1, 86400 * 10), after=instants)
def test_interval_due_times_are_the_first_multiples_after(anchor, seconds, after):
    spec = make_spec(interval_seconds=seconds, start_at=anchor)
    first = next_fire_after(spec, after)
    step = timedelta(seconds=seconds)
    assert (first - anchor) % step == timedelta(0)
    assert first > after and (first == anchor or first - step <= after)


@settings(deadline=None, max_examples=150)
@given(
    expr=st.sampled_from(EXPRESSIONS),
    tz=st.sampled_from(ZONES),
    due_after=instants,
    late=st.integers(0, 86400 * 3),
    grace=st.integers(0, 7200),
)
def test_a_pass_fires_at_most_the_latest_due_time_within_grace(expr, tz, due_after, late, grace):
    spec = cron(expr, tz)
    due = next_fire_after(spec, due_after)
    now = due + timedelta(seconds=late)
    plan = plan_fire(spec, due, now, grace)
    assert plan.next_fire_at > now
    if plan.fire_at is not None:
        assert now - timedelta(seconds=grace) <= plan.fire_at <= now
        assert next_fire_after(spec, plan.fire_at) > now
