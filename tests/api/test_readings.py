"""Reading back a device's readings: newest first, filters, keyset pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests import factories

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


@pytest.fixture
def series(device):
    """Ten temperatures a minute apart from T0, and one humidity at T0 + 30 s."""
    rows = [
        factories.ReadingFactory(
            device=device,
            metric="temperature",
            value=float(i),
            recorded_at=T0 + timedelta(minutes=i),
        )
        for i in range(10)
    ]
    rows.append(
        factories.ReadingFactory(
            device=device, metric="humidity", value=50.0, recorded_at=T0 + timedelta(seconds=30)
        )
    )
    return rows


def get(client, device, headers, **query):
    return client.get(f"/api/v1/devices/{device.id}/readings", query_string=query, headers=headers)


def test_readings_come_newest_first(client, device, series, operator, headers_for):
    items = get(client, device, headers_for(operator)).get_json()["items"]
    times = [i["ts"] for i in items]
    assert times == sorted(times, reverse=True)
    assert items[0] == {
        "id": series[9].id,
        "metric": "temperature",
        "value": 9.0,
        "ts": "2026-11-22T10:09:00Z",
    }


def test_metric_filter(client, device, series, operator, headers_for):
    items = get(client, device, headers_for(operator), metric="humidity").get_json()["items"]
    assert [i["value"] for i in items] == [50.0]


def test_since_is_inclusive_and_until_exclusive(client, device, series, operator, headers_for):
    body = get(
        client,
        device,
        headers_for(operator),
        metric="temperature",
        since="2026-11-22T10:02:00Z",
        until="2026-11-22T10:05:00Z",
    ).get_json()
    assert [i["value"] for i in body["items"]] == [4.0, 3.0, 2.0]


def test_pages_cover_every_reading_once(client, device, series, operator, headers_for):
    headers, seen, cursor = headers_for(operator), [], None
    while True:
        query = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        body = get(client, device, headers, **query).get_json()
        seen += [i["id"] for i in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(r.id for r in series)
    assert len(seen) == len(series)


def test_readings_with_the_same_time_page_by_id(client, device, operator, headers_for):
    ids = [factories.ReadingFactory(device=device, recorded_at=T0).id for _ in range(5)]
    headers = headers_for(operator)
    first = get(client, device, headers, limit=2).get_json()
    rest = get(client, device, headers, limit=10, cursor=first["next_cursor"]).get_json()
    assert [i["id"] for i in first["items"] + rest["items"]] == sorted(ids, reverse=True)


@pytest.mark.parametrize(
    "query, field",
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
        ({"cursor": "WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzAxOjAwIiwxXQ"}, "cursor"),
        ({"until": "2026-11-22T10:00:00"}, "until"),
        ({"limit": "501"}, "limit"),
    ],
)
def test_bad_filters_are_422(client, device, operator, headers_for, query, field):
    response = get(client, device, headers_for(operator), **query)
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == [field]


def test_readings_of_a_device_out_of_reach_are_404(client, other_device, operator, headers_for):
    assert get(client, other_device, headers_for(operator)).status_code == 404


def test_uploaded_readings_read_back_identically(client, device, operator, headers_for):
    client.post(
        "/api/v1/device/readings",
        headers={"Authorization": f"Bearer {device.token}"},
        json={"readings": [{"metric": "t", "value": 1.25, "ts": "2026-11-22T10:00:00.123456Z"}]},
    )
    (item,) = get(client, device, headers_for(operator)).get_json()["items"]
    assert (item["value"], item["ts"]) == (1.25, "2026-11-22T10:00:00.123456Z")


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
        datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_fast_sqlite_time_text_matches_the_column_type(at):
    from sqlalchemy.dialects import sqlite

    from portal.models import Reading
    from portal.services.readings import sqlite_time

    dialect = sqlite.dialect()
    processor = Reading.__table__.c.recorded_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert sqlite_time(at) == processor(at)
