"""``GET /devices/<id>/readings/summary``: a metric per hour or day, from the roll-ups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from portal.models import utcnow
from tests import factories
from tests.conftest import bearer

T0 = datetime(2026, 11, 22, 22, 0, tzinfo=UTC)
DAY_1, DAY_2 = "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z"
WINDOW = {"since": DAY_1, "until": "2026-11-24T00:00:00Z"}


def upload(client, device, *readings) -> None:
    body = {"readings": [{"metric": m, "value": v, "ts": at.isoformat()} for m, v, at in readings]}
    response = client.post("/api/v1/device/readings", json=body, headers=bearer(device.token))
    assert response.status_code == 201


def summary(client, device, headers, **query):
    return client.get(
        f"/api/v1/devices/{device.id}/readings/summary", query_string=query, headers=headers
    )


@pytest.fixture
def uploaded(client, device):
    """Temperatures in two hours either side of midnight (the last one sent late), and a
    humidity."""
    upload(
        client,
        device,
        ("temperature", 20.0, T0 + timedelta(minutes=10)),
        ("temperature", 22.0, T0 + timedelta(minutes=50)),
        ("temperature", 18.5, T0 + timedelta(hours=2, minutes=5)),
        ("humidity", 60.0, T0 + timedelta(minutes=20)),
    )
    upload(client, device, ("temperature", 30.0, T0 + timedelta(minutes=5)))


def test_hourly_buckets_oldest_first(client, device, uploaded, operator, headers_for):
    response = summary(client, device, headers_for(operator), metric="temperature", **WINDOW)
    assert response.status_code == 200
    assert response.get_json() == {
        "device_id": device.id,
        "metric": "temperature",
        "step": "hour",
        "since": "2026-11-22T00:00:00Z",
        "until": "2026-11-24T00:00:00Z",
        "buckets": [
            {
                "start": "2026-11-22T22:00:00Z",
                "count": 3,
                "min": 20.0,
                "max": 30.0,
                "mean": 24.0,
                "sum": 72.0,
                "last": 22.0,
                "last_at": "2026-11-22T22:50:00Z",
            },
            {
                "start": "2026-11-23T00:00:00Z",
                "count": 1,
                "min": 18.5,
                "max": 18.5,
                "mean": 18.5,
                "sum": 18.5,
                "last": 18.5,
                "last_at": "2026-11-23T00:05:00Z",
            },
        ],
        "next_cursor": None,
    }


def test_daily_buckets(client, device, uploaded, viewer, headers_for):
    body = summary(
        client, device, headers_for(viewer), metric="temperature", step="day", **WINDOW
    ).get_json()
    assert [(b["start"], b["count"], b["mean"], b["last"]) for b in body["buckets"]] == [
        ("2026-11-22T00:00:00Z", 3, 24.0, 22.0),
        ("2026-11-23T00:00:00Z", 1, 18.5, 18.5),
    ]


def test_since_is_inclusive_and_until_exclusive_on_bucket_starts(
    client, device, uploaded, operator, headers_for
):
    body = summary(
        client,
        device,
        headers_for(operator),
        metric="temperature",
        since="2026-11-22T22:00:00Z",
        until="2026-11-23T00:00:00Z",
    ).get_json()
    assert [b["start"] for b in body["buckets"]] == ["2026-11-22T22:00:00Z"]


def test_pages_cover_every_bucket_once(client, device, operator, headers_for):
    upload(client, device, *[("t", float(h), T0 + timedelta(hours=h)) for h in range(7)])
    headers = headers_for(operator)
    starts, cursor, pages = [], None, 0
    while True:
        query = {"metric": "t", "limit": 3, **WINDOW} | ({"cursor": cursor} if cursor else {})
        body = summary(client, device, headers, **query).get_json()
        starts += [b["start"] for b in body["buckets"]]
        cursor, pages = body["next_cursor"], pages + 1
        if cursor is None:
            break
    assert pages == 3
    assert starts == [
        (T0 + timedelta(hours=h)).isoformat().replace("+00:00", "Z") for h in range(7)
    ]


def test_defaults_are_the_last_24_hours_by_the_hour(client, device, operator, headers_for):
    now = utcnow()
    upload(
        client,
        device,
        ("t", 1.0, now - timedelta(hours=25)),
        ("t", 2.0, now - timedelta(minutes=1)),
    )
    body = summary(client, device, headers_for(operator), metric="t").get_json()
    assert body["step"] == "hour"
    assert [b["sum"] for b in body["buckets"]] == [2.0]


def test_a_metric_without_readings_has_no_buckets(client, device, operator, headers_for):
    body = summary(client, device, headers_for(operator), metric="pressure", **WINDOW).get_json()
    assert body["buckets"] == [] and body["next_cursor"] is None


def test_a_device_out_of_reach_is_404(client, other_device, operator, headers_for):
    response = summary(client, other_device, headers_for(operator), metric="t")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_an_unknown_device_is_404(client, operator, headers_for):
    response = client.get(
        "/api/v1/devices/999999/readings/summary?metric=t", headers=headers_for(operator)
    )
    assert response.status_code == 404


def test_without_credentials_it_is_401(client, device):
    assert summary(client, device, {}, metric="t").status_code == 401


def test_a_read_only_token_may_read_it(client, device, operator):
    token = factories.PersonalTokenFactory(user=operator, scope="read").token
    assert summary(client, device, bearer(token), metric="t").status_code == 200


@pytest.mark.parametrize(
    "query, field",
    [
        ({}, "metric"),
        ({"metric": "Temperature!"}, "metric"),
        ({"metric": "t", "step": "week"}, "step"),
        ({"metric": "t", "since": "yesterday"}, "since"),
        ({"metric": "t", "until": "2026-11-22T10:00:00"}, "until"),
        ({"metric": "t", "since": DAY_2, "until": DAY_1}, "until"),
        ({"metric": "t", "since": DAY_1, "until": DAY_1}, "until"),
        ({"metric": "t", "until": "0001-01-01T00:00:00Z"}, "until"),
        ({"metric": "t", "limit": "0"}, "limit"),
        ({"metric": "t", "limit": "501"}, "limit"),
        ({"metric": "t", "cursor": "junk"}, "cursor"),
        ({"metric": "t", "cursor": "WyJ4Il0"}, "cursor"),  # ["x"]
        ({"metric": "t", "cursor": "WzFd"}, "cursor"),  # [1]
    ],
)
def test_bad_arguments_are_422_naming_the_field(
    client, device, operator, headers_for, query, field
):
    response = summary(client, device, headers_for(operator), **query)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and list(error["fields"]) == [field]


def test_the_openapi_document_describes_it(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    operation = doc["paths"]["/api/v1/devices/{device_id}/readings/summary"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert parameters["metric"]["required"] is True
    assert parameters["step"]["schema"]["enum"] == ["hour", "day"]
    assert {"200", "401", "404", "422"} <= set(operation["responses"])
