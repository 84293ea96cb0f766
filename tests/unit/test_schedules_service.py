"""The schedules service: validation, reach, next due times, audit, local times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from portal.models import AuditEvent, Command, CommandSource, Schedule, ScheduleKind
from portal.services import schedules as service
from portal.services.errors import Forbidden, InvalidInput, NotFound
from tests import factories

UTC = UTC
NOW = datetime(2026, 5, 4, 6, 0, tzinfo=UTC)  # a Monday, 08:00 in Berlin


def make(actor, device, **fields):
    values = {
        "name": "Lights",
        "device": device,
        "action": "relay.on",
        "cron": "0 7 * * *",
        "now": NOW,
    }
    values.update(fields)
    return service.create_schedule(actor, **values)


def audit_actions(db, schedule_id):
    return (
        db.session.execute(
            select(AuditEvent.action)
            .where(AuditEvent.object_type == "schedule", AuditEvent.object_id == str(schedule_id))
            .order_by(AuditEvent.id)
        )
        .scalars()
        .all()
    )


# ---- create ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, next_fire_at",
    [
        ({"cron": "0 7 * * *"}, NOW + timedelta(hours=1)),
        ({"cron": "0 7 * * *", "timezone": "Europe/Berlin"}, NOW + timedelta(days=1, hours=-1)),
        ({"cron": None, "interval_seconds": 90}, NOW + timedelta(seconds=90)),
        ({"cron": None, "run_at": NOW + timedelta(days=2)}, NOW + timedelta(days=2)),
        (
            {"cron": "0 7 * * *", "start_at": NOW + timedelta(days=3)},
            NOW + timedelta(days=3, hours=1),
        ),
    ],
    ids=["cron-utc", "cron-berlin", "interval", "one-off", "cron-with-start"],
)
def test_create_stores_the_first_due_time(operator, device, fields, next_fire_at):
    assert make(operator, device, **fields).next_fire_at == next_fire_at


@pytest.mark.parametrize(
    "fields, kind",
    [
        ({"cron": "0 7 * * *"}, ScheduleKind.cron),
        ({"cron": None, "interval_seconds": 60}, ScheduleKind.interval),
        ({"cron": None, "run_at": NOW + timedelta(hours=1)}, ScheduleKind.once),
    ],
)
def test_create_sets_the_kind(operator, device, fields, kind):
    assert make(operator, device, **fields).kind is kind


def test_create_disabled_has_no_next_due_time(operator, device):
    assert make(operator, device, enabled=False).next_fire_at is None


def test_create_accepts_a_device_id(operator, device):
    assert make(operator, device.id).device_id == device.id


def test_create_writes_an_audit_entry(db, operator, device):
    schedule = make(operator, device)
    assert audit_actions(db, schedule.id) == ["create"]


def test_create_by_shell_needs_no_actor(device):
    assert make(None, device.id).device_id == device.id


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", ""),
        ("name", "x" * 101),
        ("action", "bad action!"),
        ("payload", [1, 2]),
        ("cron", "61 * * * *"),
        ("cron", "0 0 30 2 *"),
        ("timezone", "Mars/Olympus"),
        ("start_at", datetime(2026, 5, 5, 7)),
        ("end_at", "soon"),
        ("misfire_grace_seconds", -1),
        ("misfire_grace_seconds", "300"),
        ("command_ttl_seconds", 0),
        ("command_ttl_seconds", 10**9),
    ],
)
def test_create_names_the_bad_field(operator, device, field, value):
    with pytest.raises(InvalidInput) as caught:
        make(operator, device, **{field: value})
    assert field in caught.value.fields


@pytest.mark.parametrize(
    "field, value",
    [
        ("interval_seconds", 0),
        ("interval_seconds", True),
        ("run_at", datetime(2026, 5, 5, 7)),
    ],
)
def test_create_names_the_bad_kind_field(operator, device, field, value):
    with pytest.raises(InvalidInput) as caught:
        make(operator, device, cron=None, **{field: value})
    assert field in caught.value.fields


def test_create_reports_every_bad_field_at_once(operator, device):
    with pytest.raises(InvalidInput) as caught:
        make(operator, device, name="", action="", cron="nope")
    assert set(caught.value.fields) == {"name", "action", "cron"}


@pytest.mark.parametrize(
    "kinds, named",
    [
        ({"cron": None}, {"cron", "interval_seconds", "run_at", "sun"}),
        ({"interval_seconds": 60}, {"cron", "interval_seconds"}),
    ],
    ids=["none", "two"],
)
def test_create_needs_exactly_one_kind(operator, device, kinds, named):
    with pytest.raises(InvalidInput) as caught:
        make(operator, device, **kinds)
    assert set(caught.value.fields) == named
    assert "exactly one of cron, interval_seconds, run_at, sun" in caught.value.fields["cron"]


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"end_at": NOW + timedelta(minutes=30)}, "end_at"),
        ({"cron": None, "run_at": NOW - timedelta(seconds=1)}, "run_at"),
        ({"end_at": NOW - timedelta(days=1)}, "end_at"),
    ],
    ids=["window-closes-before-first-due", "one-off-in-the-past", "end-in-the-past"],
)
def test_create_refuses_a_window_that_never_fires(operator, device, fields, field):
    with pytest.raises(InvalidInput) as caught:
        make(operator, device, **fields)
    assert field in caught.value.fields


def test_create_on_another_operators_device_is_an_unknown_device(operator, other_device):
    with pytest.raises(InvalidInput) as caught:
        make(operator, other_device.id)
    assert caught.value.fields == {"device_id": "No such device."}


def test_create_on_a_missing_device_is_an_unknown_device(operator):
    with pytest.raises(InvalidInput) as caught:
        make(operator, 999_999)
    assert "device_id" in caught.value.fields


def test_create_by_viewer_is_forbidden(viewer, device):
    with pytest.raises(Forbidden):
        make(viewer, device.id)


def test_create_with_device_object_out_of_reach_is_not_found(operator, other_device):
    with pytest.raises(NotFound):
        make(operator, other_device)


# ---- update ---------------------------------------------------------------------------------


def test_update_of_cron_recomputes_the_next_due_time(operator, device):
    schedule = make(operator, device)
    service.update_schedule(operator, schedule, cron="30 5 * * *", now=NOW)
    assert schedule.next_fire_at == NOW + timedelta(days=1, minutes=-30)


def test_update_with_another_kind_switches_and_clears_the_others(operator, device):
    schedule = make(operator, device)
    service.update_schedule(operator, schedule, interval_seconds=120, now=NOW)
    assert (schedule.kind, schedule.cron, schedule.interval_seconds) == (
        ScheduleKind.interval,
        None,
        120,
    )


def test_update_like_the_admin_form_switches_to_one_off(operator, device):
    schedule = make(operator, device)
    run_at = NOW + timedelta(hours=5)
    service.update_schedule(
        operator, schedule, cron=None, interval_seconds=None, run_at=run_at, now=NOW
    )
    assert (schedule.kind, schedule.cron, schedule.next_fire_at) == (
        ScheduleKind.once,
        None,
        run_at,
    )


def test_update_clearing_the_only_kind_is_refused(operator, device):
    schedule = make(operator, device)
    with pytest.raises(InvalidInput) as caught:
        service.update_schedule(operator, schedule, cron=None, now=NOW)
    assert "cron" in caught.value.fields


def test_update_of_name_keeps_a_pending_due_time(operator, device):
    schedule = make(operator, device)
    later = NOW + timedelta(hours=1, seconds=5)  # due at 07:00, not yet fired
    service.update_schedule(operator, schedule, name="Renamed", now=later)
    assert schedule.next_fire_at == NOW + timedelta(hours=1)


def test_update_writes_an_audit_entry_with_the_change(db, operator, device):
    schedule = make(operator, device)
    service.update_schedule(operator, schedule, name="Renamed", now=NOW)
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "update")).scalar()
    assert event.changes == {"name": ["Lights", "Renamed"]}


def test_update_refuses_a_window_that_never_fires(operator, device):
    schedule = make(operator, device)
    with pytest.raises(InvalidInput) as caught:
        service.update_schedule(operator, schedule, end_at=NOW + timedelta(minutes=1), now=NOW)
    assert "end_at" in caught.value.fields


def test_update_refuses_unknown_fields(operator, device):
    schedule = make(operator, device)
    with pytest.raises(InvalidInput) as caught:
        service.update_schedule(operator, schedule, colour="red", now=NOW)
    assert caught.value.fields == {"colour": "Unknown field."}


def test_update_of_a_finished_one_off_name_is_allowed(operator, device):
    schedule = make(operator, device, cron=None, run_at=NOW + timedelta(minutes=5))
    service.update_schedule(operator, schedule, name="Done", now=NOW + timedelta(days=1))
    assert schedule.name == "Done"


def test_update_moves_to_a_device_the_actor_may_change(operator, device):
    schedule = make(operator, device)
    second = factories.DeviceFactory(owner=operator)
    service.update_schedule(operator, schedule, device_id=second.id, now=NOW)
    assert schedule.device_id == second.id


def test_update_cannot_move_to_another_operators_device(operator, device, other_device):
    schedule = make(operator, device)
    with pytest.raises(InvalidInput) as caught:
        service.update_schedule(operator, schedule, device_id=other_device.id, now=NOW)
    assert "device_id" in caught.value.fields


@pytest.mark.parametrize("persona, error", [("other_operator", NotFound), ("viewer", Forbidden)])
def test_update_out_of_reach_or_read_only(request, operator, device, persona, error):
    schedule = make(operator, device)
    with pytest.raises(error):
        service.update_schedule(request.getfixturevalue(persona), schedule, name="x", now=NOW)


# ---- delete, enable, run now ----------------------------------------------------------------


def test_delete_removes_the_schedule_and_keeps_its_commands(db, operator, device):
    schedule = make(operator, device)
    command = service.run_schedule_now(operator, schedule, now=NOW)
    schedule_id = schedule.id
    service.delete_schedule(operator, schedule)
    db.session.expire_all()
    assert db.session.get(Schedule, schedule_id) is None
    assert db.session.get(Command, command.id).schedule_id is None


def test_delete_writes_an_audit_entry(db, operator, device):
    schedule = make(operator, device)
    service.delete_schedule(operator, schedule)
    assert audit_actions(db, schedule.id) == ["create", "delete"]


def test_disable_stops_at_once(operator, device):
    schedule = make(operator, device)
    service.set_schedule_enabled(operator, schedule, False, now=NOW)
    assert (schedule.enabled, schedule.next_fire_at) == (False, None)


def test_enable_starts_from_now_without_catch_up(operator, device):
    schedule = make(operator, device, interval_seconds=60, cron=None)
    service.set_schedule_enabled(operator, schedule, False, now=NOW)
    later = NOW + timedelta(hours=2, seconds=30)
    service.set_schedule_enabled(operator, schedule, True, now=later)
    assert schedule.next_fire_at == NOW + timedelta(hours=2, minutes=1)


@pytest.mark.parametrize("enabled, action", [(False, "disable"), (True, "enable")])
def test_enable_and_disable_write_audit_entries(db, operator, device, enabled, action):
    schedule = make(operator, device, enabled=not enabled)
    service.set_schedule_enabled(operator, schedule, enabled, now=NOW)
    assert audit_actions(db, schedule.id) == ["create", action]


def test_enable_when_already_enabled_changes_nothing(db, operator, device):
    schedule = make(operator, device)
    service.set_schedule_enabled(operator, schedule, True, now=NOW + timedelta(days=3))
    assert (schedule.next_fire_at, audit_actions(db, schedule.id)) == (
        NOW + timedelta(hours=1),
        ["create"],
    )


def test_run_now_queues_a_schedule_command_without_a_due_time(operator, device):
    schedule = make(operator, device, payload={"seconds": 5}, command_ttl_seconds=120)
    command = service.run_schedule_now(operator, schedule, now=NOW)
    assert (
        command.source,
        command.schedule_id,
        command.due_at,
        command.payload,
        command.expires_at,
    ) == (CommandSource.schedule, schedule.id, None, {"seconds": 5}, NOW + timedelta(seconds=120))


def test_run_now_leaves_the_next_due_time(operator, device):
    schedule = make(operator, device)
    service.run_schedule_now(operator, schedule, now=NOW)
    assert (schedule.next_fire_at, schedule.fire_count) == (NOW + timedelta(hours=1), 1)


def test_run_now_writes_an_audit_entry(db, operator, device):
    schedule = make(operator, device)
    service.run_schedule_now(operator, schedule, now=NOW)
    assert audit_actions(db, schedule.id) == ["create", "run_now"]


def test_run_now_by_viewer_is_forbidden(operator, viewer, device):
    schedule = make(operator, device)
    with pytest.raises(Forbidden):
        service.run_schedule_now(viewer, schedule, now=NOW)


# ---- look-ups -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "persona, for_change, error",
    [
        ("other_operator", False, NotFound),
        ("viewer", True, Forbidden),
    ],
)
def test_get_schedule_for_refuses(request, operator, device, persona, for_change, error):
    schedule = make(operator, device)
    with pytest.raises(error):
        service.get_schedule_for(
            request.getfixturevalue(persona), schedule.id, for_change=for_change
        )


@pytest.mark.parametrize("persona", ["operator", "viewer", "admin"])
def test_get_schedule_for_finds_a_visible_schedule(request, operator, device, persona):
    schedule = make(operator, device)
    assert service.get_schedule_for(request.getfixturevalue(persona), schedule.id) is schedule


def test_get_schedule_for_missing_is_not_found(admin):
    with pytest.raises(NotFound):
        service.get_schedule_for(admin, 12345)


def test_next_fire_times_are_aware_utc_and_local_rules(operator, device):
    schedule = make(operator, device, cron="30 2 * * *", timezone="Europe/Berlin")
    times = service.next_fire_times(schedule, 3, now=datetime(2026, 3, 27, 12, tzinfo=UTC))
    assert times == [
        datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]


def test_next_fire_times_of_a_disabled_schedule_are_none(operator, device):
    schedule = make(operator, device, enabled=False)
    assert service.next_fire_times(schedule, 5, now=NOW) == []


@pytest.mark.parametrize("count", [0, 101, "5"])
def test_next_fire_times_count_is_checked(operator, device, count):
    with pytest.raises(InvalidInput) as caught:
        service.next_fire_times(make(operator, device), count, now=NOW)
    assert "count" in caught.value.fields


@pytest.mark.parametrize(
    "fields, words",
    [
        (
            {"cron": "0 7 * * 1-5", "timezone": "Europe/Berlin"},
            "At 07:00, Monday through Friday (Europe/Berlin)",
        ),
        ({"cron": None, "interval_seconds": 300}, "every 5 minutes"),
        (
            {
                "cron": None,
                "run_at": datetime(2026, 6, 1, 5, 0, tzinfo=UTC),
                "timezone": "Europe/Berlin",
            },
            "once at 2026-06-01 07:00 (Europe/Berlin)",
        ),
    ],
)
def test_describe_in_words(operator, device, fields, words):
    assert service.describe(make(operator, device, **fields)) == words


# ---- local times ----------------------------------------------------------------------------


def test_to_local_gives_naive_wall_clock_time():
    assert service.to_local(datetime(2026, 7, 1, 5, 0, tzinfo=UTC), "Europe/Berlin") == datetime(
        2026, 7, 1, 7, 0
    )


@pytest.mark.parametrize(
    "naive, expected",
    [
        (datetime(2026, 7, 1, 7, 0), datetime(2026, 7, 1, 5, 0, tzinfo=UTC)),
        # Skipped by the spring jump: read with the offset from before it (fold=0).
        (datetime(2026, 3, 29, 2, 30), datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),
        # Repeated in autumn: the first occurrence (fold=0).
        (datetime(2026, 10, 25, 2, 30), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
    ],
    ids=["summer", "nonexistent", "ambiguous"],
)
def test_from_local_reads_wall_clock_time_in_the_zone(naive, expected):
    assert service.from_local(naive, "Europe/Berlin", "run_at") == expected


@pytest.mark.parametrize("func", [service.to_local, lambda v, tz: service.from_local(v, tz, "x")])
def test_local_conversions_pass_none_through(func):
    assert func(None, "Europe/Berlin") is None


def test_from_local_in_unknown_zone_names_the_field_and_timezone():
    with pytest.raises(InvalidInput) as caught:
        service.from_local(datetime(2026, 7, 1, 7), "Mars/Olympus", "start_at")
    assert set(caught.value.fields) == {"start_at", "timezone"}
