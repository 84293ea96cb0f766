"""Rules and alerts (AUTOMATION.md) on both databases: validation and reach of rules; threshold
judgement in reading-time order with durations and hysteresis; silence and failed commands;
one open alert per rule and device; acknowledging; the commands, notifications and audit
entries that raising and resolving leave."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import (
    Alert,
    AlertState,
    AuditEvent,
    Command,
    CommandSource,
    CommandStatus,
    NotificationDelivery,
    Role,
    Rule,
)
from portal.scheduling import runner
from portal.services import alerts, commands, readings, rules
from portal.services.errors import Conflict, Forbidden, InvalidInput, NotFound
from portal.services.readings import ReadingInput
from tests import factories

T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def send(device, *points, now=None):
    """Store readings of ``temperature``: ``(seconds after T0, value)`` each, in one batch."""
    items = [ReadingInput("temperature", value, at(s)) for s, value in points]
    readings.record_readings(device, items, now or at(max(s for s, _ in points)))
    db.session.commit()


def alerts_of(rule):
    return list(
        db.session.execute(select(Alert).where(Alert.rule_id == rule.id).order_by(Alert.id))
        .scalars()
        .all()
    )


@pytest.fixture
def channel(operator):
    return factories.NotificationChannelFactory(owner=operator, name="ops hook")


@pytest.fixture
def hot(operator, device, channel):
    """> 30 raises, clears at 27; fan.on / fan.off; notifies the operator's webhook."""
    rule = rules.create_rule(
        operator,
        name="greenhouse too hot",
        kind="threshold",
        device_id=device.id,
        metric="temperature",
        op=">",
        value=30,
        clear_value=27,
        severity="critical",
        on_raise={"action": "fan.on", "payload": {"speed": 2}},
        on_clear={"action": "fan.off"},
        notify=[channel.id],
        now=T0,
    )
    db.session.commit()
    return rule


# ---- rules: validation and reach ------------------------------------------------------------


def test_a_threshold_rule_names_every_bad_field(operator, device):
    with pytest.raises(InvalidInput) as caught:
        rules.create_rule(
            operator,
            name=" ",
            kind="threshold",
            device_id=device.id,
            metric="Temp!",
            op="=>",
            value=float("nan"),
            for_seconds=-1,
            severity="loud",
            seconds=60,
            on_raise={"action": "bad action", "device_id": "x"},
            notify=[999],
        )
    assert set(caught.value.fields) == {
        "name",
        "metric",
        "op",
        "value",
        "for_seconds",
        "severity",
        "seconds",
        "on_raise.action",
        "on_raise.device_id",
        "notify",
    }
    assert db.session.scalar(select(func.count()).select_from(Rule)) == 0


@pytest.mark.parametrize(
    ("op", "value", "clear_value", "ok"),
    [(">", 30, 27, True), (">", 30, 31, False), ("<=", 5, 8, True), ("<", 5, 4, False)],
)
def test_the_clear_value_lies_on_the_clearing_side(operator, device, op, value, clear_value, ok):
    make = lambda: rules.create_rule(  # noqa: E731
        operator,
        name="r",
        kind="threshold",
        device_id=device.id,
        metric="t",
        op=op,
        value=value,
        clear_value=clear_value,
    )
    if ok:
        assert make().clear_value == clear_value
    else:
        with pytest.raises(InvalidInput) as caught:
            make()
        assert set(caught.value.fields) == {"clear_value"}


def test_rules_act_only_in_their_owners_reach(operator, viewer, device, other_device, admin):
    with pytest.raises(InvalidInput) as caught:
        rules.create_rule(
            operator, name="x", kind="silence", device_id=other_device.id, seconds=600
        )
    assert caught.value.fields == {"device_id": "No such device in the rule owner's reach."}
    with pytest.raises(InvalidInput) as caught:
        rules.create_rule(
            operator,
            name="x",
            kind="silence",
            device_id=device.id,
            seconds=600,
            on_raise={"action": "reboot", "device_id": other_device.id},
        )
    assert set(caught.value.fields) == {"on_raise.device_id"}
    other_channel = factories.NotificationChannelFactory(owner=other_device.owner, name="theirs")
    with pytest.raises(InvalidInput) as caught:
        rules.create_rule(
            operator,
            name="x",
            kind="silence",
            device_id=device.id,
            seconds=600,
            notify=[other_channel.id],
        )
    assert caught.value.fields == {"notify": f"No such channel: {other_channel.id}."}
    with pytest.raises(Forbidden):
        rules.create_rule(viewer, name="x", kind="silence", device_id=device.id, seconds=600)
    mine = rules.create_rule(operator, name="x", kind="silence", device_id=device.id, seconds=600)
    db.session.commit()
    with pytest.raises(Conflict):
        rules.create_rule(operator, name="x", kind="silence", device_id=device.id, seconds=900)
    # The other operator does not see it; the viewer reads it but may not change it.
    other = db.session.get(type(operator), other_device.owner_id)
    with pytest.raises(NotFound):
        rules.get_rule_for(other, mine.id)
    assert rules.get_rule_for(viewer, mine.id) is mine
    with pytest.raises(Forbidden):
        rules.get_rule_for(viewer, mine.id, for_change=True)
    assert rules.get_rule_for(admin, mine.id, for_change=True) is mine


def test_a_rule_kind_cannot_change_and_fields_of_other_kinds_are_refused(operator, device):
    rule = rules.create_rule(operator, name="s", kind="silence", device_id=device.id, seconds=600)
    with pytest.raises(InvalidInput) as caught:
        rules.update_rule(operator, rule, kind="threshold")
    assert set(caught.value.fields) == {"kind"}
    with pytest.raises(InvalidInput) as caught:
        rules.update_rule(operator, rule, metric="temperature")
    assert caught.value.fields == {"metric": "Only threshold rules have one."}


def test_changes_are_audited(operator, device):
    rule = rules.create_rule(operator, name="s", kind="silence", device_id=device.id, seconds=600)
    rules.update_rule(operator, rule, seconds=900, name="quiet")
    rules.delete_rule(operator, rule)
    db.session.commit()
    events = db.session.execute(
        select(AuditEvent.action, AuditEvent.changes)
        .where(AuditEvent.object_type == "rule")
        .order_by(AuditEvent.id)
    ).all()
    assert [e.action for e in events] == ["create", "update", "delete"]
    assert events[1].changes == {"name": ["s", "quiet"], "seconds": [600, 900]}


# ---- threshold --------------------------------------------------------------------------------


def test_a_reading_over_the_threshold_raises_once_and_a_clear_resolves(hot, device):
    send(device, (0, 25.0), (10, 31.5))
    (alert,) = alerts_of(hot)
    assert (alert.state, alert.value, alert.severity.value) == ("active", 31.5, "critical")
    raised = db.session.get(Command, alert.raise_command_id)
    assert (raised.action, raised.payload, raised.source) == (
        "fan.on",
        {"speed": 2},
        CommandSource.rule,
    )
    assert raised.device_id == device.id and raised.status is CommandStatus.queued
    # Still hot, then flapping around 30 above the clear value: the same alert, no storm.
    send(device, (20, 35.0), (30, 29.0), (40, 31.0), (50, 28.0))
    assert [a.state for a in alerts_of(hot)] == ["active"]
    send(device, (60, 26.9))
    (alert,) = alerts_of(hot)
    db.session.refresh(alert)
    assert alert.state is AlertState.resolved and alert.resolved_at == at(60)
    cleared = db.session.get(Command, alert.clear_command_id)
    assert cleared.action == "fan.off"
    events = db.session.execute(
        select(NotificationDelivery.event).order_by(NotificationDelivery.id)
    ).scalars()
    assert list(events) == ["alert.raised", "alert.resolved"]
    delivery = db.session.execute(select(NotificationDelivery)).scalars().first()
    assert delivery.body["alert"]["id"] == alert.id
    assert delivery.body["rule"]["name"] == "greenhouse too hot"
    assert delivery.body["device"] == {"id": device.id, "name": device.name}
    # Hot again: a new alert.
    send(device, (70, 40.0))
    assert [a.state.value for a in alerts_of(hot)] == ["resolved", "active"]
    audit = db.session.execute(
        select(AuditEvent.action).where(AuditEvent.object_type == "alert").order_by(AuditEvent.id)
    ).scalars()
    assert list(audit) == ["raise", "resolve", "raise"]


def test_a_batch_is_judged_in_reading_time_not_arrival_order(hot, device):
    # Arrives as 26 (t=20), 31 (t=0), 32 (t=10): in time order it rose, then cleared.
    send(device, (20, 26.0), (0, 31.0), (10, 32.0))
    (alert,) = alerts_of(hot)
    assert alert.state is AlertState.resolved
    assert alert.value == 31.0


def test_a_late_reading_older_than_the_last_change_changes_nothing(hot, device):
    send(device, (100, 31.0))
    send(device, (50, 10.0))  # older than the raise: history
    assert [a.state for a in alerts_of(hot)] == ["active"]


def test_without_clear_value_a_reading_no_longer_over_clears(operator, device):
    rule = rules.create_rule(
        operator,
        name="r",
        kind="threshold",
        device_id=device.id,
        metric="temperature",
        op=">=",
        value=30,
    )
    db.session.commit()
    send(device, (0, 30.0))
    send(device, (10, 29.99))
    assert [a.state.value for a in alerts_of(rule)] == ["resolved"]


def test_other_metrics_and_devices_are_not_judged(hot, device, operator):
    elsewhere = factories.DeviceFactory(owner=operator, name="elsewhere")
    send(elsewhere, (0, 99.0))
    readings.record_readings(device, [ReadingInput("humidity", 99.0, at(1))], at(1))
    db.session.commit()
    assert alerts_of(hot) == []


@pytest.fixture
def slow(operator, device):
    rule = rules.create_rule(
        operator,
        name="hot for 5 min",
        kind="threshold",
        device_id=device.id,
        metric="temperature",
        op=">",
        value=30,
        for_seconds=300,
        now=T0,
    )
    db.session.commit()
    return rule


def test_a_duration_is_completed_by_a_reading(slow, device):
    send(device, (0, 31.0), (100, 32.0))
    assert alerts_of(slow) == []
    send(device, (299, 33.0))
    assert alerts_of(slow) == []
    send(device, (300, 34.0))
    (alert,) = alerts_of(slow)
    assert alert.value == 34.0


def test_a_reading_under_the_threshold_breaks_the_duration(slow, device):
    send(device, (0, 31.0), (200, 29.0), (250, 31.0))
    runner.tick(at(400))
    assert alerts_of(slow) == []  # held only since t=250
    runner.tick(at(550))
    (alert,) = alerts_of(slow)
    assert alert.value == 31.0 and alert.raised_at == at(550)


def test_the_scheduler_pass_raises_a_duration_that_passed_without_readings(slow, device):
    send(device, (0, 31.0))
    runner.tick(at(299))
    assert alerts_of(slow) == []
    runner.tick(at(301))
    assert [a.state.value for a in alerts_of(slow)] == ["active"]
    runner.tick(at(900))
    assert len(alerts_of(slow)) == 1
    send(device, (1000, 20.0))
    assert [a.state.value for a in alerts_of(slow)] == ["resolved"]


def test_an_acknowledged_alert_stays_open_until_it_clears(
    hot, device, operator, viewer, other_operator
):
    send(device, (0, 31.0))
    (alert,) = alerts_of(hot)
    with pytest.raises(Forbidden):
        alerts.acknowledge(viewer, alert)
    with pytest.raises(NotFound):
        alerts.get_alert_for(other_operator, alert.id)
    alerts.acknowledge(operator, alert, at(5))
    db.session.commit()
    assert alert.state is AlertState.acknowledged and alert.acknowledged_by_id == operator.id
    alerts.acknowledge(operator, alert, at(6))  # again: nothing changes
    assert alert.acknowledged_at == at(5)
    send(device, (10, 40.0))
    assert len(alerts_of(hot)) == 1
    send(device, (20, 20.0))
    db.session.refresh(alert)
    assert alert.state is AlertState.resolved
    with pytest.raises(Conflict):
        alerts.acknowledge(operator, alert)


def test_disabling_a_rule_resolves_its_alert_without_the_clear_command(hot, device, operator):
    send(device, (0, 31.0))
    rules.set_rule_enabled(operator, hot, False, now=at(5))
    db.session.commit()
    (alert,) = alerts_of(hot)
    assert alert.state is AlertState.resolved and alert.clear_command_id is None
    send(device, (10, 45.0))  # disabled: not judged
    assert len(alerts_of(hot)) == 1


def test_one_open_alert_per_rule_and_device_is_held_by_the_database(hot, device):
    send(device, (0, 31.0))
    duplicate = Alert(rule_id=hot.id, device_id=device.id, severity=hot.severity)
    db.session.add(duplicate)
    with pytest.raises(Exception, match="(?i)unique"):
        db.session.flush()
    db.session.rollback()


# ---- silence ----------------------------------------------------------------------------------


def test_silence_raises_in_the_pass_and_resolves_when_the_device_is_heard(operator, device):
    device.last_seen_at = at(0)
    rule = rules.create_rule(
        operator, name="quiet", kind="silence", device_id=device.id, seconds=600, now=T0
    )
    db.session.commit()
    runner.tick(at(599))
    assert alerts_of(rule) == []
    runner.tick(at(601))
    (alert,) = alerts_of(rule)
    assert alert.value == 601.0
    runner.tick(at(700))
    assert len(alerts_of(rule)) == 1
    device.last_seen_at = at(710)
    db.session.commit()
    runner.tick(at(720))
    db.session.refresh(alert)
    assert alert.state is AlertState.resolved


# ---- command_failed ---------------------------------------------------------------------------


def test_a_failed_command_raises_and_acknowledging_resolves(operator, device, other_device, admin):
    rule = rules.create_rule(operator, name="failures", kind="command_failed")
    db.session.commit()
    command = commands.enqueue_command(operator, device, "relay.on")
    commands.poll_commands(device)
    commands.report_result(device, command.id, "failed", {"error": "stuck"})
    db.session.commit()
    (alert,) = alerts_of(rule)
    assert (alert.device_id, alert.value, alert.state.value) == (device.id, command.id, "active")
    # Another failure while it is open raises nothing more; the other operator's does neither.
    again = commands.enqueue_command(operator, device, "relay.on", expires_in=1)
    theirs = commands.enqueue_command(admin, other_device, "relay.on", expires_in=1)
    runner.tick(again.expires_at + timedelta(seconds=1))
    assert len(alerts_of(rule)) == 1
    db.session.refresh(theirs)
    assert theirs.status is CommandStatus.expired
    alerts.acknowledge(operator, alert)
    db.session.commit()
    assert alert.state is AlertState.resolved and alert.acknowledged_at is not None
    # An expiry after that raises a new one.
    late = commands.enqueue_command(operator, device, "relay.on", expires_in=1)
    runner.tick(late.expires_at + timedelta(seconds=1))
    assert [a.state.value for a in alerts_of(rule)] == ["resolved", "active"]
    assert alerts_of(rule)[-1].value == late.id


def test_an_admins_command_failed_rule_watches_every_device(admin, device, other_device):
    rule = rules.create_rule(admin, name="all failures", kind="command_failed")
    db.session.commit()
    for target in (device, other_device):
        command = commands.enqueue_command(admin, target, "x")
        commands.poll_commands(target)
        commands.report_result(target, command.id, "failed")
    db.session.commit()
    assert sorted(a.device_id for a in alerts_of(rule)) == sorted([device.id, other_device.id])


def test_viewers_see_alerts_in_reach_and_lists_filter_by_state(hot, device, viewer, operator):
    send(device, (0, 31.0), (10, 20.0), (20, 33.0))
    assert [a.state.value for a in alerts.list_alerts(viewer)] == ["active", "resolved"]
    assert [a.state.value for a in alerts.list_alerts(operator, state="open")] == ["active"]
    assert [a.state.value for a in alerts.list_alerts(operator, state="resolved")] == ["resolved"]
    assert alerts.open_alerts_for(viewer)[0].rule_id == hot.id
    assert viewer.role is Role.viewer


# ---- cost and concurrency ---------------------------------------------------------------------


def _statements(run):
    seen: list[str] = []
    engine = db.engine

    def note(conn, cursor, statement, *args):
        seen.append(statement)

    from sqlalchemy import event

    event.listen(engine, "before_cursor_execute", note)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return seen


@pytest.mark.parametrize("size", [10, 1000])
def test_a_batch_is_judged_in_one_step_whatever_its_size(hot, device, size):
    # Rising then falling through the batch: one raise and one resolve, whatever the size.
    values = [31.0 + (i % 3) for i in range(size - 1)] + [20.0]
    items = [ReadingInput("temperature", v, at(i)) for i, v in enumerate(values)]
    seen = _statements(lambda: readings.record_readings(device, items, at(size)))
    db.session.commit()
    assert [a.state.value for a in alerts_of(hot)] == ["resolved"]
    # The same statements for 10 readings as for 1,000 (no statement per reading).
    assert len(seen) < 40, seen


def test_without_rules_on_its_metrics_a_batch_costs_one_more_query(hot, device):
    items = [ReadingInput("humidity", 50.0, at(i)) for i in range(100)]
    assert device.id  # loaded before counting
    traced: list[str] = []
    raw = db.session.connection().connection.driver_connection
    if db.engine.dialect.name == "sqlite":  # every statement, the driver's own included
        raw.set_trace_callback(traced.append)
    try:
        seen = _statements(lambda: readings.record_readings(device, items, at(100)))
    finally:
        if db.engine.dialect.name == "sqlite":
            raw.set_trace_callback(None)
    # Through SQLAlchemy only the INSERT (and the roll-ups' upserts, which every batch pays:
    # tests/unit/test_rollups.py); the look-up for rules runs on the driver's cursor.
    seen = [s for s in seen if "reading_rollups_" not in s]
    assert len(seen) == 1 and seen[0].startswith("INSERT INTO readings"), seen
    if db.engine.dialect.name == "sqlite":
        traced = [t for t in traced if "reading_rollups_" not in t]
        statements = [t for t in traced if t.split()[0] in ("INSERT", "SELECT", "UPDATE")]
        assert [t.split()[0] for t in statements] == ["INSERT", "SELECT"], traced
        assert "FROM rules" in statements[1]
    assert alerts_of(hot) == []


def test_concurrent_batches_raise_one_alert(hot, device, app):
    import threading

    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def upload(offset: int) -> None:
        with app.app_context():
            try:
                from portal.models import Device

                board = db.session.get(Device, device.id)
                barrier.wait(timeout=10)
                items = [ReadingInput("temperature", 35.0, at(offset + i)) for i in range(50)]
                readings.record_readings(board, items, at(offset + 50))
                db.session.commit()
            except BaseException as exc:
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=upload, args=(i * 100,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    db.session.expire_all()
    assert [a.state.value for a in alerts_of(hot)] == ["active"]
    assert db.session.scalar(select(func.count()).select_from(Command)) == 1


def test_the_dashboard_order_is_active_then_critical_then_newest(operator, device):
    made = []
    for index, severity in enumerate(["info", "critical", "warning", "critical"]):
        rule = rules.create_rule(
            operator,
            name=f"r{index}",
            kind="threshold",
            device_id=device.id,
            metric=f"m{index}",
            op=">",
            value=0,
            severity=severity,
        )
        made.append(rule)
    db.session.commit()
    readings.record_readings(device, [ReadingInput(f"m{i}", 1.0, at(i)) for i in range(4)], at(10))
    db.session.commit()
    first_critical = alerts_of(made[1])[0]
    alerts.acknowledge(operator, first_critical)
    db.session.commit()
    shown = [a.rule_id for a in alerts.open_alerts_for(operator)]
    assert shown == [made[3].id, made[2].id, made[0].id, made[1].id]
    assert [a.rule_id for a in alerts.open_alerts_for(operator, limit=2)] == shown[:2]
    assert alerts.count_open(operator) == 4
