"""Retention: settings, per-device overrides, the purge in bounded steps (readings, ended
commands, audit entries), its record on the scheduler pass, and the data's size."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select, text

from portal import create_app
from portal.config import ConfigError
from portal.models import (
    Alert,
    AuditEvent,
    Command,
    CommandStatus,
    DailyRollup,
    HourlyRollup,
    Reading,
    SchedulerPass,
)
from portal.scheduling import runner
from portal.services import retention, rules
from portal.services.devices import create_device, update_device
from portal.services.errors import InvalidInput
from tests import factories

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
S = timedelta(seconds=1)
POLICY = retention.Policy(readings_days=90, commands_days=180, audit_days=730)


def reading(device, age: timedelta, metric: str = "temperature") -> Reading:
    return factories.ReadingFactory(device=device, metric=metric, recorded_at=NOW - age)


def kept_readings(db, device=None) -> list[timedelta]:
    """The ages of the readings left (of one device), oldest first."""
    db.session.expire_all()
    query = select(Reading.recorded_at).order_by(Reading.recorded_at)
    if device is not None:
        query = query.where(Reading.device_id == device.id)
    return [NOW - at for at in db.session.execute(query).scalars()]


def purge(policy=POLICY, **kwargs) -> retention.Purged:
    kwargs.setdefault("budget_seconds", 60)
    return retention.purge(NOW, policy, **kwargs)


# ---- settings -------------------------------------------------------------------------------


def test_retention_settings_default_to_90_180_and_730_days(tmp_path):
    config = create_app({"INSTANCE_PATH": str(tmp_path)}).config
    assert retention.Policy.from_config(config) == retention.Policy(90, 180, 730, 730)


@pytest.mark.parametrize("value, days", [("0", 0), ("30", 30), ("36500", 36500)])
def test_readings_retention_comes_from_the_environment(tmp_path, monkeypatch, value, days):
    monkeypatch.setenv("PORTAL_READINGS_RETENTION_DAYS", value)
    assert create_app({"INSTANCE_PATH": str(tmp_path)}).config["READINGS_RETENTION_DAYS"] == days


@pytest.mark.parametrize(
    "name", ["READINGS_RETENTION_DAYS", "COMMANDS_RETENTION_DAYS", "AUDIT_RETENTION_DAYS"]
)
@pytest.mark.parametrize("value", ["-1", "ninety", "36501", "true", "1.5", ""])
def test_a_bad_retention_setting_fails_loudly_naming_it(tmp_path, monkeypatch, name, value):
    monkeypatch.setenv(f"PORTAL_{name}", value)
    with pytest.raises(ConfigError, match=f"PORTAL_{name}"):
        create_app({"INSTANCE_PATH": str(tmp_path)})


@pytest.mark.parametrize("value", [None, 0, 1, 36500])
def test_device_retention_accepts_none_zero_and_whole_days(value):
    assert retention.check_days(value) == value


@pytest.mark.parametrize("value", [-1, 36501, True, 1.5, "30", 10**40])
def test_device_retention_refuses_anything_else(value):
    with pytest.raises(ValueError, match="0 \\(keep forever\\)"):
        retention.check_days(value)


def test_device_service_keeps_and_changes_the_override_with_an_audit_entry(db, operator):
    device, _ = create_device(operator, "boiler", readings_retention_days=7)
    db.session.commit()
    assert device.readings_retention_days == 7
    update_device(operator, device, readings_retention_days=None)
    db.session.commit()
    assert device.readings_retention_days is None
    change = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "update")
    ).scalar_one()
    assert change.changes == {"readings_retention_days": [7, None]}


@pytest.mark.parametrize("value", [-5, "forever", 1e3])
def test_device_service_names_a_bad_override(db, operator, device, value):
    with pytest.raises(InvalidInput) as caught:
        update_device(operator, device, readings_retention_days=value)
    assert set(caught.value.fields) == {"readings_retention_days"}


# ---- readings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "age, kept",
    [(90 * DAY + S, False), (90 * DAY, True), (90 * DAY - S, True)],
    ids=["one-second-past", "exactly-90-days", "one-second-short"],
)
def test_a_reading_goes_once_older_than_the_retention(db, device, age, kept):
    reading(device, age)
    assert purge().readings == (0 if kept else 1)
    assert kept_readings(db) == ([age] if kept else [])


def test_each_device_keeps_its_readings_by_its_own_retention(db, operator):
    default, forever, week = (
        factories.DeviceFactory(owner=operator, readings_retention_days=days)
        for days in (None, 0, 7)
    )
    ages = (100 * DAY, 30 * DAY, 3 * DAY)
    for device in (default, forever, week):
        for age in ages:
            reading(device, age)
    assert purge().readings == 3
    assert kept_readings(db, default) == [30 * DAY, 3 * DAY]
    assert kept_readings(db, forever) == list(ages)
    assert kept_readings(db, week) == [3 * DAY]


def test_default_of_zero_keeps_readings_forever_but_not_a_devices_own_limit(db, operator):
    default = factories.DeviceFactory(owner=operator)
    week = factories.DeviceFactory(owner=operator, readings_retention_days=7)
    for device in (default, week):
        reading(device, 1000 * DAY)
    purge(retention.Policy(0, 180, 730))
    assert kept_readings(db, default) == [1000 * DAY]
    assert kept_readings(db, week) == []


def test_devices_grouped_by_retention_span_several_statements(db, operator, monkeypatch):
    """More devices than one statement takes: every chunk is purged, none twice."""
    monkeypatch.setattr(retention, "DEVICE_CHUNK", 2)
    devices = [factories.DeviceFactory(owner=operator) for _ in range(4)]
    devices += [factories.DeviceFactory(owner=operator, readings_retention_days=10)]
    for device in devices:
        reading(device, 95 * DAY)
        reading(device, 20 * DAY)
    assert purge().readings == 6
    assert [kept_readings(db, d) for d in devices] == [[20 * DAY]] * 4 + [[]]


class Statements:
    """The DELETE statements the engine ran on a table, each with its row count, and the
    commits between them."""

    def __init__(self, engine, table: str) -> None:
        self.events: list[tuple[str, int]] = []
        self.engine = engine
        self.table = table

    def after_execute(self, conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith(f"DELETE FROM {self.table.upper()}"):
            self.events.append(("delete", cursor.rowcount))

    def commit(self, conn) -> None:
        self.events.append(("commit", 0))

    def __enter__(self):
        event.listen(self.engine, "after_cursor_execute", self.after_execute)
        event.listen(self.engine, "commit", self.commit)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "after_cursor_execute", self.after_execute)
        event.remove(self.engine, "commit", self.commit)

    @property
    def deletes(self) -> list[int]:
        return [rows for kind, rows in self.events if kind == "delete"]


@pytest.mark.parametrize("own_retention", [False, True], ids=["one-group", "by-device"])
def test_small_steps_remove_every_expired_reading_and_nothing_else(db, operator, own_retention):
    devices = [
        factories.DeviceFactory(
            owner=operator, readings_retention_days=90 if own_retention else None
        )
        for _ in range(2)
    ]
    for n in range(20):
        reading(devices[n % 2], 91 * DAY + n * S)
    for n in range(5):
        reading(devices[n % 2], 89 * DAY)
    with Statements(db.engine, "readings") as seen:
        purged = purge(step_rows=3)
    assert (purged.readings, purged.done) == (20, True)
    assert kept_readings(db) == [89 * DAY] * 5
    assert len(seen.deletes) == 7 and max(seen.deletes) == 3 and sum(seen.deletes) == 20
    # Each step is a transaction of its own: a commit follows every DELETE.
    for position, (kind, _rows) in enumerate(seen.events):
        if kind == "delete":
            assert seen.events[position + 1][0] == "commit"


def test_a_purge_stops_at_its_time_budget_and_says_it_is_not_done(db, device):
    for n in range(3):
        reading(device, 100 * DAY + n * S)
    purged = purge(budget_seconds=0)
    assert (purged.total, purged.done) == (0, False)
    assert len(kept_readings(db)) == 3
    assert purge().readings == 3


# ---- commands and audit entries ------------------------------------------------------------


def command(device, status: CommandStatus, created_age: timedelta, finished_age=None) -> Command:
    created = NOW - created_age
    return factories.CommandFactory(
        device=device,
        status=status,
        created_at=created,
        expires_at=created + timedelta(hours=1),
        finished_at=None if finished_age is None else NOW - finished_age,
    )


def kept_commands(db) -> set[int]:
    db.session.expire_all()
    return set(db.session.execute(select(Command.id)).scalars())


@pytest.mark.parametrize(
    "status",
    [CommandStatus.succeeded, CommandStatus.failed, CommandStatus.expired, CommandStatus.cancelled],
)
def test_an_ended_command_goes_once_it_ended_longer_ago_than_the_retention(db, device, status):
    command(device, status, 200 * DAY, 200 * DAY - timedelta(hours=1))
    recent = command(device, status, 179 * DAY, 179 * DAY).id
    assert purge().commands == 1
    assert kept_commands(db) == {recent}


@pytest.mark.parametrize("status", [CommandStatus.queued, CommandStatus.delivered])
def test_an_open_command_is_never_purged_however_old(db, device, status):
    kept = command(device, status, 400 * DAY)
    assert purge().commands == 0
    assert kept_commands(db) == {kept.id}


def test_a_command_that_ended_recently_stays_though_created_long_ago(db, device):
    kept = command(device, CommandStatus.succeeded, 200 * DAY, 100 * DAY)
    purge()
    assert kept_commands(db) == {kept.id}


def test_an_alert_outlives_the_command_it_queued(db, operator, device):
    gone = command(device, CommandStatus.succeeded, 200 * DAY, 200 * DAY)
    rule = rules.create_rule(
        operator, name="hot", kind="threshold", device_id=device.id, metric="t", op=">", value=1
    )
    alert = Alert(rule_id=rule.id, device_id=device.id, severity=rule.severity)
    alert.raise_command_id = gone.id
    db.session.add(alert)
    db.session.commit()
    purge()
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).raise_command_id is None
    assert kept_commands(db) == set()


@pytest.mark.parametrize("column", ["raise_command_id", "clear_command_id"])
def test_a_deleted_commands_alerts_are_found_by_index_not_by_reading_them_all(db, column):
    """Deleting a command sets its alerts' reference to NULL: SQLite's foreign key action (and
    PostgreSQL's) looks them up by the column, which without an index reads every alert for
    every command that retention deletes."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("a SQLite query plan")
    plan = " ".join(
        row[3]
        for row in db.session.execute(
            text(f"EXPLAIN QUERY PLAN UPDATE alerts SET {column} = NULL WHERE {column} = 1")
        )
    )
    assert f"USING COVERING INDEX ix_alerts_{column}" in plan or (
        f"USING INDEX ix_alerts_{column}" in plan
    ), plan


def test_commands_retention_of_zero_keeps_ended_commands(db, device):
    kept = command(device, CommandStatus.failed, 5000 * DAY, 5000 * DAY)
    purge(retention.Policy(90, 0, 730))
    assert kept_commands(db) == {kept.id}


@pytest.mark.parametrize("days, left", [(730, 1), (0, 2)])
def test_audit_entries_go_after_their_retention(db, days, left):
    factories.AuditEventFactory(created_at=NOW - 731 * DAY)
    factories.AuditEventFactory(created_at=NOW - 729 * DAY)
    purge(retention.Policy(90, 180, days))
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == left


def rollup(db, model, device, age: timedelta):
    at = NOW - age
    row = model(
        device_id=device.id,
        starts_at=at,
        metric="temperature",
        count=1,
        total=1.0,
        minimum=1.0,
        maximum=1.0,
        last_value=1.0,
        last_at=at,
    )
    db.session.add(row)
    db.session.commit()


def test_roll_ups_go_after_their_own_retention_in_steps(db, device):
    for model in (HourlyRollup, DailyRollup):
        for age in (800 * DAY, 731 * DAY, 729 * DAY):
            rollup(db, model, device, age)
    policy = retention.Policy(90, 180, 730, rollups_days=730)
    assert retention.count_expired(NOW, policy).rollups == 4
    purged = purge(policy, step_rows=1)
    assert (purged.rollups, purged.done) == (4, True)
    for model in (HourlyRollup, DailyRollup):
        left = db.session.execute(select(model.starts_at)).scalars().all()
        assert [NOW - at for at in left] == [729 * DAY]


def test_a_dry_run_counts_what_a_purge_deletes_and_deletes_nothing(db, device):
    reading(device, 100 * DAY)
    reading(device, DAY)
    command(device, CommandStatus.succeeded, 181 * DAY, 181 * DAY)
    factories.AuditEventFactory(created_at=NOW - 800 * DAY)
    counted = retention.count_expired(NOW, POLICY)
    assert (counted.readings, counted.commands, counted.audit) == (1, 1, 1)
    assert len(kept_readings(db)) == 2
    purged = purge()
    assert (purged.readings, purged.commands, purged.audit) == (1, 1, 1)


# ---- the scheduler pass ---------------------------------------------------------------------


def test_a_scheduler_pass_purges_and_records_how_many_rows_went(app, db, device):
    reading(device, 100 * DAY)
    reading(device, DAY)
    command(device, CommandStatus.succeeded, 200 * DAY, 200 * DAY)
    runner.tick(NOW)
    db.session.expire_all()
    row = db.session.execute(select(SchedulerPass)).scalar_one()
    assert row.purged == 2
    assert row.finished_at >= row.started_at
    assert kept_readings(db) == [DAY]


def test_a_pass_with_nothing_expired_records_none(app, db, device):
    reading(device, DAY)
    runner.tick(NOW)
    assert db.session.execute(select(SchedulerPass.purged)).scalar_one() == 0


# ---- size -----------------------------------------------------------------------------------


def test_data_size_counts_rows_and_finds_the_oldest(db, device):
    reading(device, 10 * DAY)
    reading(device, DAY)
    factories.AuditEventFactory(created_at=NOW - 3 * DAY)
    sizes = {s.name: s for s in retention.data_size()}
    assert (sizes["readings"].rows, sizes["readings"].oldest_at) == (2, NOW - 10 * DAY)
    assert (sizes["commands"].rows, sizes["commands"].oldest_at) == (0, None)
    assert sizes["audit_events"].oldest_at == NOW - 3 * DAY


def test_data_summary_tells_about_how_many_readings_the_oldest_day_and_retention(
    db, operator, device
):
    factories.DeviceFactory(owner=operator, readings_retention_days=0)
    for n in range(5):
        reading(device, 10 * DAY - n * S)
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("ANALYZE readings"))
    summary = retention.data_summary(POLICY)
    assert summary == retention.DataSummary(
        readings=5,
        oldest_day=(NOW - 10 * DAY).date(),
        retention_days=90,
        own_retention=1,
    )


def test_data_summary_of_no_readings(db):
    summary = retention.data_summary(POLICY)
    assert (summary.readings, summary.oldest_day) == (0, None)
