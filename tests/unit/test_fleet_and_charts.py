"""Dashboard figures and chart aggregation, scoped to the user, computed in the database."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, text

from portal.models import CommandStatus, SchedulerPass
from portal.services import fleet
from portal.services.charts import reading_series
from tests import factories

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def mixed_fleet(operator, other_operator):
    factories.DeviceFactory(owner=operator, last_seen_at=NOW - timedelta(seconds=30))
    factories.DeviceFactory(owner=operator, last_seen_at=NOW - timedelta(hours=2))
    factories.DeviceFactory(owner=operator, last_seen_at=None)
    factories.DeviceFactory(owner=other_operator, last_seen_at=NOW - timedelta(seconds=5))


def test_device_counts_split_online_stale_never(db, admin, mixed_fleet):
    counts = fleet.device_counts(admin, NOW, online_seconds=300)
    assert counts == {"total": 4, "online": 2, "stale": 1, "never": 1}


def test_device_counts_are_scoped_for_operators(db, operator, mixed_fleet):
    counts = fleet.device_counts(operator, NOW, online_seconds=300)
    assert counts == {"total": 3, "online": 1, "stale": 1, "never": 1}


@pytest.mark.parametrize("seen_ago,expected", [(299, "online"), (300, "online"), (301, "stale")])
def test_online_window_edges(db, device, seen_ago, expected):
    device.last_seen_at = NOW - timedelta(seconds=seen_ago)
    assert fleet.device_status(device, NOW, 300) == expected


def test_command_counts_cover_the_last_24_hours_only(db, admin, device):
    factories.CommandFactory(
        device=device, status=CommandStatus.failed, created_at=NOW - timedelta(hours=23)
    )
    factories.CommandFactory(
        device=device, status=CommandStatus.failed, created_at=NOW - timedelta(hours=25)
    )
    factories.CommandFactory(device=device, status=CommandStatus.queued, created_at=NOW)
    counts = fleet.command_counts(admin, NOW)
    assert counts["failed"] == 1 and counts["queued"] == 1 and counts["succeeded"] == 0


def test_commands_needing_attention_hide_other_operators(db, operator, device, other_device):
    mine = factories.CommandFactory(
        device=device, status=CommandStatus.expired, created_at=NOW - timedelta(hours=1)
    )
    factories.CommandFactory(
        device=other_device, status=CommandStatus.failed, created_at=NOW - timedelta(hours=1)
    )
    assert [c.id for c in fleet.commands_needing_attention(operator, NOW)] == [mine.id]


def test_schedules_due_soon(db, operator, device, other_device):
    factories.ScheduleFactory(device=device, next_fire_at=NOW + timedelta(minutes=59))
    factories.ScheduleFactory(device=device, next_fire_at=NOW + timedelta(minutes=61))
    factories.ScheduleFactory(device=device, next_fire_at=None, enabled=False)
    factories.ScheduleFactory(device=other_device, next_fire_at=NOW + timedelta(minutes=1))
    count, rows = fleet.schedules_due_soon(operator, NOW)
    assert count == 1 and rows[0].device_id == device.id


def test_scheduler_is_quiet_without_a_recent_pass(db):
    assert fleet.scheduler_health(NOW)["quiet"] is True
    db.session.add(
        SchedulerPass(
            started_at=NOW - timedelta(seconds=11), finished_at=NOW - timedelta(seconds=10)
        )
    )
    db.session.commit()
    health = fleet.scheduler_health(NOW)
    assert health["quiet"] is False and health["last"].finished_at == NOW - timedelta(seconds=10)


def test_reading_series_buckets_in_the_database(db, device):
    # Two readings in the same 12-minute bucket of the 24 h range, one in another.
    bucket = 24 * 3600 // 120
    start = datetime.fromtimestamp((int(NOW.timestamp()) // bucket - 3) * bucket, UTC)
    for offset, value in ((0, 10.0), (60, 20.0), (bucket, 5.0)):
        factories.ReadingFactory(
            device=device,
            metric="temperature",
            value=value,
            recorded_at=start + timedelta(seconds=offset),
        )
    factories.ReadingFactory(
        device=device, metric="temperature", value=99.0, recorded_at=NOW - timedelta(days=2)
    )
    series = reading_series(device.id, "24h", NOW)["metrics"]["temperature"]
    assert series["t"] == [int(start.timestamp()), int(start.timestamp()) + bucket]
    assert series["avg"] == [15.0, 5.0]
    assert series["min"] == [10.0, 5.0] and series["max"] == [20.0, 5.0]


def test_reading_series_keeps_metrics_apart_and_ignores_other_devices(db, device, other_device):
    factories.ReadingFactory(
        device=device, metric="humidity", value=50, recorded_at=NOW - timedelta(minutes=5)
    )
    factories.ReadingFactory(
        device=other_device, metric="humidity", value=80, recorded_at=NOW - timedelta(minutes=5)
    )
    chart = reading_series(device.id, "1h", NOW)
    assert list(chart["metrics"]) == ["humidity"]
    assert chart["metrics"]["humidity"]["avg"] == [50.0]


def test_unknown_range_falls_back_to_24h(db, device):
    assert reading_series(device.id, "2y", NOW)["range"] == "24h"


def test_reading_series_leaves_the_planner_settings_as_it_found_them(db, device):
    """The chart groups by hash on PostgreSQL; the rest of the transaction must still sort."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL planner setting")
    db.session.execute(text("SELECT 1"))  # the transaction is open before the chart, as on a page
    reading_series(device.id, "7d", NOW)
    assert db.session.execute(text("SHOW enable_sort")).scalar() == "on"


def test_the_dashboards_command_queries_read_only_the_last_day_on_sqlite(db, admin, device):
    """SQLite's planner, left alone, chose the status index and read every command ever sent
    for "the last 24 h" (70 ms at 100,000 commands); ``fleet.not_by_index`` keeps it on the
    ``created_at`` range. The plans are asked of SQLite itself, on the queries as compiled."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("a SQLite query plan")
    statements = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        if "FROM commands" in statement and ("GROUP BY" in statement or "LIMIT" in statement):
            statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", keep)
    try:
        fleet.command_counts(admin, NOW)
        fleet.commands_needing_attention(admin, NOW)
    finally:
        event.remove(db.engine, "before_cursor_execute", keep)
    connection = db.session.connection()
    plans = [
        " ".join(row[3] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + s, p))
        for s, p in statements
    ]
    assert len(plans) == 2, statements
    for plan in plans:
        assert "USING INDEX ix_commands_created_at (created_at>?)" in plan, plan
