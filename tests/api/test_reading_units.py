"""A metric's unit, sent with its readings ("°C", "kPa"): kept per device and metric, newest
wins, shown by the device's chart; a bad one is a 422 naming the item, and nothing is stored."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.models import MetricUnit, Reading, utcnow
from portal.services.charts import reading_series
from portal.services.readings import METRIC_HELP, UNIT_HELP


def units(db, device) -> dict[str, str]:
    db.session.expire_all()
    rows = db.session.execute(select(MetricUnit).where(MetricUnit.device_id == device.id))
    return {row.metric: row.unit for row in rows.scalars()}


def upload(client, headers, *items):
    return client.post("/api/v1/device/readings", json={"readings": list(items)}, headers=headers)


def test_a_unit_sent_with_readings_labels_the_devices_chart(client, db, device, device_headers):
    answer = upload(
        client,
        device_headers,
        {"metric": "pressure", "value": 101.3, "unit": "kPa"},
        {"metric": "pressure", "value": 101.1},  # a unit need not come with every reading
        {"metric": "rpm", "value": 900},
    )
    assert answer.status_code == 201
    assert units(db, device) == {"pressure": "kPa"}
    chart = reading_series(device.id, "1h", utcnow() + timedelta(seconds=1))
    assert chart["units"] == {"pressure": "kPa"}
    assert set(chart["metrics"]) == {"pressure", "rpm"}


def test_the_newest_unit_wins_and_each_device_keeps_its_own(
    client, db, device, device_headers, other_device, other_device_headers
):
    upload(client, device_headers, {"metric": "t", "value": 20, "unit": "°C"})
    upload(client, other_device_headers, {"metric": "t", "value": 70, "unit": "°F"})
    upload(client, device_headers, {"metric": "t", "value": 293, "unit": "K"})
    assert units(db, device) == {"t": "K"}
    assert units(db, other_device) == {"t": "°F"}


def test_a_bad_unit_is_named_and_nothing_is_stored(client, db, device, device_headers):
    for bad in ("", "x" * 17, "a\nb", "\x00", 5):
        answer = upload(
            client,
            device_headers,
            {"metric": "t", "value": 1},
            {"metric": "t", "value": 2, "unit": bad},
        )
        assert answer.status_code == 422, bad
        assert "readings.1.unit" in answer.get_json()["error"]["fields"], answer.get_json()
    assert db.session.scalar(select(func.count()).select_from(Reading)) == 0
    assert units(db, device) == {}


@pytest.mark.parametrize(
    ("item", "field", "words"),
    [
        ({"metric": "t", "value": 1, "unit": "a\nb"}, "unit", UNIT_HELP),
        ({"metric": "Not A Metric", "value": 1}, "metric", METRIC_HELP),
    ],
)
def test_a_bad_unit_or_metric_is_told_in_words_not_as_a_regular_expression(
    client, device_headers, item, field, words
):
    answer = upload(client, device_headers, item)
    assert answer.status_code == 422
    assert answer.get_json()["error"]["fields"] == {f"readings.0.{field}": words}
