"""Readings partitioned by UTC week on PostgreSQL (portal/services/partitions.py): weeks made
ahead by the scheduler pass, any timestamp accepted (the DEFAULT partition), weeks dropped whole,
and an installation's readings moved into the partitioned table by its migrations (by day, then
by week) without losing one. On SQLite all of it is a no-op on one table."""

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from portal import create_app
from portal.extensions import db as _db
from portal.models import Reading
from portal.scheduling.runner import tick
from portal.services import partitions
from portal.services.readings import record_readings

NOW = datetime(2026, 12, 2, 13, 30, tzinfo=UTC)
TODAY = NOW.date()


@pytest.fixture
def pg(db):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("partitions are PostgreSQL's")
    partitions.drop_before(datetime(9999, 1, 1, tzinfo=UTC))
    db.session.commit()
    yield db
    db.session.rollback()
    partitions.drop_before(datetime(9999, 1, 1, tzinfo=UTC))
    db.session.commit()


def rows_in(table: str) -> int:
    return _db.session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_sqlite_keeps_one_table_and_the_pass_leaves_it_alone(db):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's side")
    assert not partitions.is_partitioned()
    assert partitions.ensure_partitions(NOW) == []
    assert partitions.drop_before(NOW) == {}


def test_a_new_database_has_a_partitioned_table_that_takes_any_time(pg, device):
    assert partitions.is_partitioned()
    times = [datetime(1970, 1, 2, tzinfo=UTC), NOW, datetime(2099, 12, 31, tzinfo=UTC)]
    record_readings(device, [("t", float(i), at) for i, at in enumerate(times)], NOW)
    pg.session.commit()
    assert rows_in("readings_default") == 3  # no week made yet: all in DEFAULT
    stored = pg.session.execute(_db.select(Reading.recorded_at).order_by(Reading.id)).scalars()
    assert list(stored) == times


def test_the_weeks_of_the_days_ahead_are_made_once(pg):
    made = partitions.ensure_partitions(NOW)
    pg.session.commit()
    days = [TODAY + timedelta(days=n) for n in range(-1, partitions.DAYS_AHEAD + 1)]
    wanted = sorted({partitions.week_of(d) for d in days})
    assert len(wanted) in (2, 3)
    assert made == [partitions.partition_name(d) for d in wanted]
    assert sorted(partitions.week_partitions()) == wanted
    assert partitions.ensure_partitions(NOW) == []


def test_making_a_week_moves_its_readings_out_of_the_default_partition(pg, device):
    tomorrow = NOW + timedelta(days=1)
    record_readings(device, [("t", 1.0, tomorrow), ("t", 2.0, NOW + timedelta(days=30))], NOW)
    pg.session.commit()
    ids = set(pg.session.execute(_db.select(Reading.id)).scalars())
    partitions.ensure_partitions(NOW)
    pg.session.commit()
    name = partitions.partition_name(tomorrow.date())
    assert rows_in(name) == 1
    assert rows_in("readings_default") == 1  # the week a month ahead is not made yet
    assert set(pg.session.execute(_db.select(Reading.id)).scalars()) == ids
    # New readings of that day go straight to its partition.
    record_readings(device, [("t", 3.0, tomorrow + timedelta(hours=1))], NOW)
    pg.session.commit()
    assert rows_in(name) == 2


def test_dropping_weeks_removes_exactly_the_expired_weeks(pg, device):
    partitions.ensure_partitions(NOW, ahead=0, behind=21)
    record_readings(
        device,
        [("t", float(n), NOW - timedelta(days=7 * n)) for n in range(4)]
        + [("t", 9.0, NOW - timedelta(days=400))],
        NOW,
    )
    pg.session.commit()
    # Last week's Monday: the weeks before it have ended.
    last_week = partitions.week_of(TODAY - timedelta(days=7))
    cutoff = datetime.combine(last_week, datetime.min.time(), tzinfo=UTC)
    dropped = partitions.drop_before(cutoff)
    pg.session.commit()
    assert dropped == {partitions.partition_name(TODAY - timedelta(days=7 * n)): 1 for n in (3, 2)}
    values = sorted(pg.session.execute(_db.select(Reading.value)).scalars())
    assert values == [0.0, 1.0, 9.0]  # the DEFAULT partition's old row is retention's


def test_the_scheduler_pass_makes_the_weeks_ahead(pg):
    tick(NOW)
    ahead = TODAY + timedelta(days=partitions.DAYS_AHEAD)
    assert partitions.week_of(ahead) in partitions.week_partitions()


# ---- the migration -----------------------------------------------------------------------------
def _run(app, *args: str) -> None:
    result = app.test_cli_runner().invoke(args=["db", *args])
    assert result.exit_code == 0, result.output


def test_the_migration_moves_every_reading_and_back(empty_database, tmp_path):
    if not empty_database.startswith("postgresql"):
        pytest.skip("SQLite keeps its table; tests/test_migrations.py covers it")
    app = create_app(
        {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x", "DATABASE_URL": empty_database}
    )
    _run(app, "upgrade", "c0ffee000019")
    today = datetime.now(UTC).replace(microsecond=0)
    times = [
        today - timedelta(days=500),  # older than the days made: stays in DEFAULT
        today - timedelta(days=3),
        today,
        today + timedelta(days=1),
        datetime(2099, 1, 1, tzinfo=UTC),
    ]
    engine = create_engine(empty_database)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, username, password_hash, role, active, timezone, "
                "created_at) VALUES (1, 'u', 'x', 'operator', true, 'UTC', now())"
            )
        )
        conn.execute(
            text(
                "INSERT INTO devices (id, name, kind, location, description, "
                "token_hash, token_prefix, enabled, owner_id, created_at, updated_at) "
                "VALUES (1, 'd', 'k', '', '', 'h', 'p', true, 1, now(), now())"
            )
        )
        for n, at in enumerate(times * 3):
            conn.execute(
                text(
                    "INSERT INTO readings (device_id, metric, value, recorded_at) "
                    "VALUES (1, 'm', :v, :at)"
                ),
                {"v": float(n), "at": at},
            )
        before = conn.execute(text("SELECT * FROM readings ORDER BY id")).all()
    three_days_ago = (today - timedelta(days=3)).date()
    _run(app, "upgrade", "c0ffee000022")  # by day, as installations had it for a while
    with engine.begin() as conn:
        assert conn.execute(text("SELECT * FROM readings ORDER BY id")).all() == before
        kind = conn.execute(text("SELECT relkind FROM pg_class WHERE relname = 'readings'"))
        assert kind.scalar_one() == "p"
        assert conn.execute(text("SELECT count(*) FROM readings_default")).scalar_one() == 6
        day = conn.execute(text(f"SELECT count(*) FROM readings_p{three_days_ago:%Y%m%d}"))
        assert day.scalar_one() == 3
    _run(app, "upgrade")  # by week
    same_week = sum(
        3 for at in times if partitions.week_of(at.date()) == partitions.week_of(three_days_ago)
    )
    with engine.begin() as conn:
        assert conn.execute(text("SELECT * FROM readings ORDER BY id")).all() == before
        assert conn.execute(text("SELECT count(*) FROM readings_default")).scalar_one() == 6
        week = conn.execute(
            text(f"SELECT count(*) FROM {partitions.partition_name(three_days_ago)}")
        )
        assert week.scalar_one() == same_week
        days = conn.execute(text("SELECT count(*) FROM pg_class WHERE relname ~ '^readings_p'"))
        assert days.scalar_one() == 0
        new_id = conn.execute(
            text(
                "INSERT INTO readings (device_id, metric, value, recorded_at) "
                "VALUES (1, 'm', 0, now()) RETURNING id"
            )
        ).scalar_one()
        assert new_id == before[-1].id + 1  # the sequence went along
        before.append(
            conn.execute(text("SELECT * FROM readings WHERE id = :i"), {"i": new_id}).one()
        )
    _run(app, "downgrade", "c0ffee000022")  # back to days
    with engine.begin() as conn:
        assert conn.execute(text("SELECT * FROM readings ORDER BY id")).all() == before
        day = conn.execute(text(f"SELECT count(*) FROM readings_p{three_days_ago:%Y%m%d}"))
        assert day.scalar_one() == 3
    _run(app, "downgrade", "c0ffee000019")
    with engine.begin() as conn:
        assert conn.execute(text("SELECT * FROM readings ORDER BY id")).all() == before
        kind = conn.execute(text("SELECT relkind FROM pg_class WHERE relname = 'readings'"))
        assert kind.scalar_one() == "r"
    engine.dispose()
    with app.app_context():
        _db.engine.dispose()


def test_partition_names_are_the_weeks_monday():
    # Friday 9 January 2026 is in the week from Monday the 5th.
    assert partitions.partition_name(date(2026, 1, 9)) == "readings_w20260105"
    assert partitions.partition_name(date(2026, 1, 5)) == "readings_w20260105"
    assert partitions.partition_name(date(2026, 1, 4)) == "readings_w20251229"


def test_retention_drops_whole_weeks_past_every_devices_retention(pg, device, other_device):
    from portal.services import retention

    partitions.ensure_partitions(NOW, ahead=0, behind=40)
    record_readings(device, [("t", float(n), NOW - timedelta(days=n)) for n in range(40)], NOW)
    record_readings(other_device, [("t", 1.0, NOW - timedelta(days=11))], NOW)
    other_device.readings_retention_days = 5  # keeps less: its old rows go row by row
    pg.session.commit()
    policy = retention.Policy(readings_days=8, commands_days=0, audit_days=0, rollups_days=0)
    purged = retention.purge(NOW, policy, budget_seconds=10)
    pg.session.expire_all()
    weeks = partitions.week_partitions()
    # The weeks that ended 8 or more days ago went whole; the week that holds the cutoff
    # stays, its expired readings deleted row by row.
    assert min(weeks) == partitions.week_of(TODAY - timedelta(days=8))
    kept = pg.session.execute(_db.select(Reading.device_id, Reading.value)).all()
    assert sorted(v for d, v in kept if d == device.id) == [float(n) for n in range(9)]
    assert [v for d, v in kept if d == other_device.id] == []
    assert purged.readings == 31 + 1


def test_a_device_that_keeps_readings_forever_keeps_every_week(pg, device, other_device):
    from portal.services import retention

    partitions.ensure_partitions(NOW, ahead=0, behind=12)
    record_readings(device, [("t", 1.0, NOW - timedelta(days=11))], NOW)
    record_readings(other_device, [("t", 2.0, NOW - timedelta(days=11))], NOW)
    device.readings_retention_days = 0
    pg.session.commit()
    policy = retention.Policy(readings_days=8, commands_days=0, audit_days=0, rollups_days=0)
    purged = retention.purge(NOW, policy, budget_seconds=10)
    weeks = {partitions.week_of(TODAY - timedelta(days=n)) for n in range(13)}
    assert set(partitions.week_partitions()) == weeks
    assert purged.readings == 1  # the other device's, row by row
    values = pg.session.execute(_db.select(Reading.value)).scalars().all()
    assert values == [1.0]


def test_a_week_waits_for_a_busy_table_only_briefly_and_comes_next_pass(pg, app):
    """Another session holds the DEFAULT partition (a long report): making a week gives up after
    the lock timeout instead of queueing uploads behind it, and the next pass makes it."""
    import time

    engine = create_engine(pg.engine.url)
    other = engine.connect()
    blocker = other.begin()
    other.execute(text(f"LOCK TABLE {partitions.DEFAULT} IN ACCESS SHARE MODE"))
    other.execute(text(f"SELECT count(*) FROM {partitions.DEFAULT}"))
    other.execute(text(f"LOCK TABLE {partitions.DEFAULT} IN EXCLUSIVE MODE"))
    try:
        started = time.monotonic()
        assert partitions.make_week(TODAY) is None
        assert time.monotonic() - started < partitions.LOCK_TIMEOUT_MS / 1000 + 3
    finally:
        blocker.rollback()
        other.close()
        engine.dispose()
    assert partitions.make_week(TODAY) == partitions.partition_name(TODAY)
    assert partitions.week_of(TODAY) in partitions.week_partitions()
