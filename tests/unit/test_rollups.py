"""Roll-ups: always the GROUP BY of the readings they summarise, however the readings came (HTTP
uploads with and without Idempotency-Key, the MQTT bridge's sets with repeated keys, late and
out-of-order, across hour and day boundaries); filled by the migration; kept and purged."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from portal import create_app
from portal.extensions import db as _db
from portal.models import DailyRollup, Device, HourlyRollup, IdempotencyRecord, Reading
from portal.models.types import UTCDateTime
from portal.mqtt import handlers
from portal.services import deletes, devices, readings, rollups
from portal.services.charts import reading_series
from tests import factories
from tests.conftest import bearer

BASE = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)  # examples span 22:00 to 02:00: a new day
EDGES = [
    BASE + timedelta(hours=h, microseconds=us) for h in (1, 2, 3) for us in (-1, 0, 1)
]  # each side of 23:00, midnight and 01:00
INSTANTS = st.one_of(
    st.sampled_from(EDGES),
    st.integers(0, 4 * 3600 * 4).map(lambda q: BASE + timedelta(seconds=q / 4)),
)
# Quarters: sums of them are exact in floating point, so totals compare exactly.
VALUES = st.integers(-400, 400).map(lambda n: n / 4)
READINGS = st.lists(
    st.tuples(st.sampled_from(["t", "rh"]), VALUES, INSTANTS), min_size=1, max_size=12
)
UPLOADS = st.lists(
    st.tuples(
        st.sampled_from(["http", "mqtt"]),
        st.integers(0, 2),  # which device
        st.sampled_from([None, "k1", "k2"]),  # the batch's idempotency key
        READINGS,
    ),
    min_size=1,
    max_size=8,
)
SETTINGS = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}


def group_by(rows, step: str) -> dict:
    """The roll-ups computed from raw ``(device_id, metric, value, recorded_at, id)`` rows:
    the oracle. The last value is the latest reading's, the larger among equal times."""
    groups: dict = defaultdict(list)
    for device_id, metric, value, at, _id in rows:
        start = at.replace(minute=0, second=0, microsecond=0)
        if step == "day":
            start = start.replace(hour=0)
        groups[(device_id, start, metric)].append((at, value))
    summary = {}
    for key, items in groups.items():
        values = [value for _, value in items]
        last_at, last = max(items)
        summary[key] = (len(items), sum(values), min(values), max(values), last, last_at)
    return summary


def raw_rows(db) -> list:
    db.session.rollback()
    return db.session.execute(
        select(Reading.device_id, Reading.metric, Reading.value, Reading.recorded_at, Reading.id)
    ).all()


def stored(db, model) -> dict:
    db.session.rollback()
    return {
        (r.device_id, r.starts_at, r.metric): (
            r.count,
            r.total,
            r.minimum,
            r.maximum,
            r.last_value,
            r.last_at,
        )
        for r in db.session.scalars(select(model))
    }


def assert_rollups_agree(db) -> None:
    rows = raw_rows(db)
    assert stored(db, HourlyRollup) == group_by(rows, "hour")
    assert stored(db, DailyRollup) == group_by(rows, "day")


def body(items, key=None) -> dict:
    payload: dict = {
        "readings": [{"metric": m, "value": v, "ts": at.isoformat()} for m, v, at in items]
    }
    if key is not None:
        payload["key"] = key
    return payload


def upload_http(client, board, items, key) -> None:
    headers = bearer(board.token) | ({"Idempotency-Key": key} if key else {})
    payload = body(items)
    response = client.post("/api/v1/device/readings", json=payload, headers=headers)
    assert response.status_code in (201, 409), response.get_json()


def publish_mqtt(db, messages) -> None:
    """What the bridge does with a set of messages, then its commit."""
    batch = [
        (f"portal/dev-{board.id}/up/readings", json.dumps(body(items, key)).encode())
        for board, items, key in messages
    ]
    outcomes = handlers.handle_batch("portal", batch, datetime.now(UTC), max_bytes=1 << 20)
    db.session.commit()
    assert all(o.ack is not None for o in outcomes)


def clear(db) -> None:
    db.session.rollback()
    for model in (DailyRollup, HourlyRollup, Reading, IdempotencyRecord):
        db.session.execute(delete(model))
    db.session.commit()


def test_rollups_always_equal_a_group_by_of_the_readings(db, client, operator):
    boards = [factories.DeviceFactory(owner=operator) for _ in range(3)]

    @given(uploads=UPLOADS)
    @settings(max_examples=60, **SETTINGS)
    def check(uploads):
        clear(db)
        waiting: list = []  # MQTT messages the bridge handles as one set
        for way, index, key, items in uploads:
            if way == "mqtt":
                waiting.append((boards[index], items, key))
                continue
            if waiting:
                publish_mqtt(db, waiting)
                waiting = []
            upload_http(client, boards[index], items, key)
        if waiting:
            publish_mqtt(db, waiting)
        note(f"{len(raw_rows(db))} readings stored")
        assert_rollups_agree(db)
        # The migration's backfill (the same statements) rebuilds the very same rows.
        rollups.rebuild_rollups()
        _db.session.commit()
        assert_rollups_agree(db)

    check()


def test_a_replayed_http_batch_adds_nothing(db, client, device):
    items = [("t", 1.0, BASE), ("t", 3.0, BASE + timedelta(minutes=5))]
    for _ in range(2):
        upload_http(client, device, items, "same-key")
    assert stored(db, HourlyRollup) == {
        (device.id, BASE, "t"): (2, 4.0, 1.0, 3.0, 3.0, items[1][2])
    }


def test_a_late_reading_updates_but_does_not_replace_the_last_value(db, device):
    readings.record_readings(
        device, [readings.ReadingInput("t", 5.0, BASE + timedelta(minutes=50))]
    )
    readings.record_readings(
        device, [readings.ReadingInput("t", -2.0, BASE + timedelta(minutes=1))]
    )
    db.session.commit()
    (hour,) = db.session.scalars(select(HourlyRollup)).all()
    assert (hour.count, hour.total, hour.minimum, hour.maximum) == (2, 3.0, -2.0, 5.0)
    assert (hour.last_value, hour.last_at) == (5.0, BASE + timedelta(minutes=50))
    assert hour.mean == 1.5


def test_arbitrary_floats_sum_up_to_the_group_by_within_rounding(db, device):
    values = [0.1, 0.2, 0.3, 1e-9, 123456.789, -0.7]
    for i, value in enumerate(values):
        readings.record_readings(
            device, [readings.ReadingInput("t", value, BASE + timedelta(seconds=i))]
        )
    db.session.commit()
    (hour,) = db.session.scalars(select(HourlyRollup)).all()
    assert hour.total == pytest.approx(sum(values), rel=1e-12)
    assert (hour.count, hour.minimum, hour.maximum, hour.last_value) == (6, -0.7, 123456.789, -0.7)


# ---- the migration's backfill ------------------------------------------------------------------

USERS = sa.table(
    "users",
    *(sa.column(n) for n in ("id", "username", "password_hash", "role", "active", "timezone")),
    sa.column("created_at", UTCDateTime()),
)
DEVICES = sa.table(
    "devices",
    *(sa.column(n) for n in ("id", "owner_id", "name", "kind", "location", "description")),
    *(sa.column(n) for n in ("enabled", "token_hash", "token_prefix")),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
)
READINGS_TABLE = sa.table(
    "readings",
    *(sa.column(n) for n in ("id", "device_id", "metric", "value")),
    sa.column("recorded_at", UTCDateTime()),
)


def test_the_upgrade_summarises_the_readings_an_installation_has(empty_database, tmp_path):
    app = create_app(
        {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x", "DATABASE_URL": empty_database}
    )
    runner = app.test_cli_runner()
    result = runner.invoke(args=["db", "upgrade", "c0ffee000018"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = {"username": "u", "password_hash": "x", "role": "operator", "active": True}
        device = {"name": "d", "kind": "k", "location": "", "description": "", "enabled": True}
        rows = [
            # Ids out of time order (a late reading came in last), a tie on time, two devices.
            (1, 1, "t", 20.5, BASE + timedelta(minutes=30)),
            (2, 1, "t", 19.0, BASE + timedelta(minutes=59, seconds=59, microseconds=999999)),
            (3, 1, "t", 18.0, BASE + timedelta(hours=2)),
            (4, 1, "t", 17.0, BASE + timedelta(hours=2)),
            (5, 1, "rh", 60.0, BASE + timedelta(hours=3, minutes=1)),
            (6, 1, "t", 99.0, BASE + timedelta(minutes=1)),
            (7, 2, "t", 1.0, BASE + timedelta(hours=1)),
        ]
        with _db.engine.begin() as conn:
            conn.execute(sa.insert(USERS).values(id=1, timezone="UTC", created_at=BASE, **user))
            for device_id in (1, 2):
                conn.execute(
                    sa.insert(DEVICES).values(
                        id=device_id,
                        owner_id=1,
                        token_hash=f"h{device_id}",
                        token_prefix="pd_x",
                        created_at=BASE,
                        updated_at=BASE,
                        **{**device, "name": f"d{device_id}"},
                    )
                )
            conn.execute(
                sa.insert(READINGS_TABLE),
                [
                    {"id": i, "device_id": d, "metric": m, "value": v, "recorded_at": at}
                    for i, d, m, v, at in rows
                ],
            )
        _db.engine.dispose()
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        raw = [(d, m, v, at, i) for i, d, m, v, at in rows]
        assert stored(_db, HourlyRollup) == group_by(raw, "hour")
        assert stored(_db, DailyRollup) == group_by(raw, "day")
        # Equal times: the larger value is last, whichever came first.
        midnight = BASE + timedelta(hours=2)
        assert stored(_db, HourlyRollup)[(1, midnight, "t")] == (
            2,
            35.0,
            17.0,
            18.0,
            18.0,
            midnight,
        )
        assert stored(_db, DailyRollup)[(1, BASE.replace(hour=0), "t")] == (
            3,
            138.5,
            19.0,
            99.0,
            19.0,
            rows[1][4],
        )
        _db.session.remove()
        _db.engine.dispose()


# ---- retention and deletes ----------------------------------------------------------------------


def _rollups_at(device, starts) -> None:
    for at in starts:
        readings.record_readings(device, [readings.ReadingInput("t", 1.0, at)])
    _db.session.commit()


def test_purge_deletes_expired_rollups_in_bounded_steps_and_nothing_else(db, device):
    now = datetime(2028, 3, 1, tzinfo=UTC)
    old = [now - timedelta(days=731, hours=h) for h in range(5)]  # 5 hours, 1-2 days: expired
    kept = [now - timedelta(days=729), now - timedelta(days=1)]
    _rollups_at(device, old + kept)
    expired = (len(old), 2)  # hours, days
    assert sum(expired) == 7
    steps = []
    while True:
        deleted = rollups.purge_expired_rollups(now, 3, days=730)
        db.session.commit()
        steps.append(deleted)
        if deleted < 3:
            break
    assert steps == [3, 3, 1]
    cutoff = now - timedelta(days=730)
    for model in (HourlyRollup, DailyRollup):
        assert len(stored(db, model)) == len(kept)
        assert min(db.session.scalars(select(model.starts_at))) >= cutoff


def test_purge_follows_the_setting_and_zero_keeps_them_forever(app, db, device):
    now = datetime(2028, 3, 1, tzinfo=UTC)
    _rollups_at(device, [now - timedelta(days=40)])
    app.config["ROLLUP_RETENTION_DAYS"] = 0
    assert rollups.purge_expired_rollups(now, 100) == 0
    app.config["ROLLUP_RETENTION_DAYS"] = 30
    assert rollups.purge_expired_rollups(now, 100) == 2
    db.session.commit()
    assert stored(db, HourlyRollup) == stored(db, DailyRollup) == {}


def test_rollup_retention_defaults_to_two_years(app):
    assert app.config["ROLLUP_RETENTION_DAYS"] == 730


def test_deleting_a_device_takes_its_rollups_and_the_preview_counts_only_readings(
    db, admin, device, other_device
):
    _rollups_at(device, [BASE, BASE + timedelta(hours=1)])
    _rollups_at(other_device, [BASE])
    preview = deletes.preview(admin, device)
    assert {r.kind: r.count for r in preview.dependents} == {"reading": 2}
    devices.delete_device(admin, db.session.get(Device, device.id))
    db.session.commit()
    assert {k[0] for k in stored(db, HourlyRollup)} == {other_device.id}
    assert {k[0] for k in stored(db, DailyRollup)} == {other_device.id}


# ---- charts -------------------------------------------------------------------------------------

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "range_key, bucket_seconds", [("7d", 3600), ("30d", 6 * 3600), ("1y", 86400)]
)
def test_long_ranges_are_drawn_from_rollups(db, device, range_key, bucket_seconds):
    slot = int(NOW.timestamp()) // bucket_seconds * bucket_seconds - bucket_seconds
    start = datetime.fromtimestamp(slot, UTC)
    _rollups_at(device, [start + timedelta(minutes=5)])
    readings.record_readings(
        device, [readings.ReadingInput("t", 4.0, start + timedelta(minutes=7))]
    )
    db.session.commit()
    # Raw readings the roll-ups never saw (a bulk load past ingest) are not in the chart.
    factories.ReadingFactory(device=device, metric="t", value=1000.0, recorded_at=start)
    chart = reading_series(device.id, range_key, NOW)
    assert chart["bucket_seconds"] == bucket_seconds
    assert chart["metrics"] == {"t": {"t": [slot], "avg": [2.5], "min": [1.0], "max": [4.0]}}
    assert datetime.fromisoformat(chart["since"]).timestamp() % bucket_seconds == 0


@pytest.mark.parametrize("range_key", ["1h", "24h"])
def test_short_ranges_are_drawn_from_raw_readings(db, device, range_key):
    factories.ReadingFactory(
        device=device, metric="t", value=7.0, recorded_at=NOW - timedelta(minutes=3)
    )
    assert reading_series(device.id, range_key, NOW)["metrics"]["t"]["avg"] == [7.0]


def test_the_chart_offers_the_five_ranges():
    from portal.services.charts import RANGES

    assert list(RANGES) == ["1h", "24h", "7d", "30d", "1y"]


def test_bridges_storing_sets_of_the_same_devices_at_once_never_deadlock(app, db, operator):
    """Two bridges (or a bridge and uploads) store sets that share roll-up rows, each set
    listing the devices in its own order: the rows are locked in one order, so none waits for
    another forever (PostgreSQL would kill one with "deadlock detected")."""
    boards = [factories.DeviceFactory(owner=operator).id for _ in range(6)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def bridge(index: int) -> None:
        order = boards[::-1] if index % 2 else boards
        with app.app_context():
            try:
                barrier.wait()
                for round_ in range(15):
                    items = [("t", float(index), BASE + timedelta(minutes=round_))]
                    messages = [(_db.session.get(Device, b), items, None) for b in order]
                    publish_mqtt(_db, messages)
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                _db.session.remove()

    threads = [threading.Thread(target=bridge, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert len(raw_rows(db)) == 4 * 15 * len(boards)
    assert_rollups_agree(db)
