"""Readings that come through a real broker and the bridge are rolled up as over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from portal.extensions import db
from portal.models import DailyRollup, HourlyRollup
from tests.mqtt_stack import wait_for
from tests.unit.test_rollups import group_by, raw_rows, stored

T0 = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)


def batch(key: str, *readings) -> dict:
    return {
        "key": key,
        "readings": [{"metric": m, "value": v, "ts": at.isoformat()} for m, v, at in readings],
    }


def test_bridged_batches_roll_up_once_late_ones_included(mqtt_stack):
    device_id, token = mqtt_stack.add_device()
    board = mqtt_stack.device_client(device_id, token).connect()
    late = batch("b-2", ("t", 5.0, T0 + timedelta(minutes=10)))
    for body in (
        batch("b-1", ("t", 21.0, T0 + timedelta(minutes=50)), ("t", 19.0, T0 + timedelta(hours=1))),
        late,
        late,  # not seen acknowledged by the board: sent again, stored and counted once
    ):
        board.publish("readings", body)

    def three_acks():
        acks = [a for a in board.acks() if a["topic"] == "readings"]
        return acks if len(acks) >= 3 else None

    acks = wait_for(three_acks, what="three acks")
    assert [a.get("replayed", False) for a in acks] == [False, False, True]
    rows = raw_rows(db)
    assert len(rows) == 3
    assert stored(db, HourlyRollup) == group_by(rows, "hour")
    assert stored(db, DailyRollup) == group_by(rows, "day")
    hour = stored(db, HourlyRollup)[(device_id, T0, "t")]
    assert hour == (2, 26.0, 5.0, 21.0, 21.0, T0 + timedelta(minutes=50))


def test_a_unit_sent_over_mqtt_is_kept_like_one_sent_over_http(mqtt_stack):
    from sqlalchemy import select

    from portal.models import MetricUnit

    device_id, token = mqtt_stack.add_device()
    board = mqtt_stack.device_client(device_id, token).connect()
    board.publish("readings", {"key": "u-1", "readings": [{"metric": "p", "value": 1.0}]})
    board.publish(
        "readings", {"key": "u-2", "readings": [{"metric": "p", "value": 2.0, "unit": "hPa"}]}
    )
    board.publish("readings", {"key": "u-3", "readings": [{"metric": "p", "value": 3, "unit": 4}]})

    def three_acks():
        acks = [a for a in board.acks() if a["topic"] == "readings"]
        return acks if len(acks) >= 3 else None

    acks = wait_for(three_acks, what="three acks")
    assert [a.get("error") is None for a in acks] == [True, True, False]
    db.session.expire_all()
    kept = db.session.execute(select(MetricUnit.metric, MetricUnit.unit)).all()
    assert [tuple(row) for row in kept] == [("p", "hPa")]
