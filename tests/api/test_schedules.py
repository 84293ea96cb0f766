"""Schedules for people: CRUD through the scheduler's services, roles and reach, next times."""

from __future__ import annotations

from datetime import datetime

import pytest

from portal.models import AuditEvent, Schedule
from tests import factories
from tests.api.conftest import count


@pytest.fixture
def as_role(request, headers_for):
    return lambda name: headers_for(request.getfixturevalue(name))


def body_for(device, **extra):
    return {
        "name": "mornings",
        "device_id": device.id,
        "action": "relay.on",
        "payload": {"seconds": 30},
        "cron": "0 7 * * 1-5",
        "timezone": "Europe/Berlin",
        **extra,
    }


@pytest.mark.parametrize("role", ["admin", "operator"])
def test_create_a_cron_schedule(client, device, as_role, role):
    response = client.post("/api/v1/schedules", json=body_for(device), headers=as_role(role))
    assert response.status_code == 201
    body = response.get_json()
    assert (body["kind"], body["cron"], body["timezone"], body["device_id"]) == (
        "cron",
        "0 7 * * 1-5",
        "Europe/Berlin",
        device.id,
    )
    assert body["next_fire_at"].endswith("Z")
    assert body["description"]


@pytest.mark.parametrize("timing", [{"interval_seconds": 300}, {"run_at": "2099-01-01T07:00:00Z"}])
def test_create_interval_and_one_off_schedules(client, device, as_role, timing):
    body = body_for(device, cron=None, **timing)
    response = client.post("/api/v1/schedules", json=body, headers=as_role("operator"))
    assert response.status_code == 201


@pytest.mark.parametrize(
    "extra, fields",
    [
        ({"interval_seconds": 300}, {"cron", "interval_seconds"}),
        ({"cron": None}, {"cron", "interval_seconds", "run_at", "sun"}),
        ({"cron": "61 * * * *"}, {"cron"}),
        ({"timezone": "Mars/Olympus"}, {"timezone"}),
        ({"colour": "red"}, {"colour"}),
    ],
)
def test_bad_schedule_is_422_naming_fields(client, db, device, as_role, extra, fields):
    response = client.post(
        "/api/v1/schedules", json=body_for(device, **extra), headers=as_role("operator")
    )
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == fields
    assert count(db, Schedule) == 0


def test_schedule_for_a_device_out_of_reach_is_422_on_device_id(client, other_device, as_role):
    response = client.post(
        "/api/v1/schedules", json=body_for(other_device), headers=as_role("operator")
    )
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["device_id"]


def test_viewer_cannot_create_a_schedule(client, db, device, as_role):
    response = client.post("/api/v1/schedules", json=body_for(device), headers=as_role("viewer"))
    assert response.status_code == 403
    assert count(db, Schedule) == 0


@pytest.mark.parametrize("role, visible", [("admin", 2), ("viewer", 2), ("operator", 1)])
def test_list_shows_schedules_in_reach(client, device, other_device, as_role, role, visible):
    factories.ScheduleFactory(device=device)
    factories.ScheduleFactory(device=other_device)
    items = client.get("/api/v1/schedules", headers=as_role(role)).get_json()["items"]
    assert len(items) == visible


def test_operator_gets_404_for_another_operators_schedule(client, other_device, as_role):
    schedule = factories.ScheduleFactory(device=other_device)
    headers = as_role("operator")
    path = f"/api/v1/schedules/{schedule.id}"
    assert [
        client.get(path, headers=headers).status_code,
        client.patch(path, json={"name": "x"}, headers=headers).status_code,
        client.delete(path, headers=headers).status_code,
        client.get(path + "/next", headers=headers).status_code,
    ] == [404] * 4


def test_patch_switches_kind_and_keeps_the_rest(client, device, as_role):
    schedule = factories.ScheduleFactory(device=device, name="pump")
    response = client.patch(
        f"/api/v1/schedules/{schedule.id}",
        json={"cron": "*/15 * * * *"},
        headers=as_role("operator"),
    )
    assert response.status_code == 200
    body = response.get_json()
    assert (body["kind"], body["cron"], body["interval_seconds"], body["name"]) == (
        "cron",
        "*/15 * * * *",
        None,
        "pump",
    )


def test_viewer_patch_is_403(client, device, as_role):
    schedule = factories.ScheduleFactory(device=device)
    response = client.patch(
        f"/api/v1/schedules/{schedule.id}", json={"name": "x"}, headers=as_role("viewer")
    )
    assert response.status_code == 403


def test_delete_a_schedule_writes_an_audit_entry(client, db, device, operator, as_role):
    schedule = factories.ScheduleFactory(device=device)
    response = client.delete(f"/api/v1/schedules/{schedule.id}", headers=as_role("operator"))
    assert response.status_code == 204
    assert count(db, Schedule) == 0
    (event,) = db.session.query(AuditEvent).filter_by(object_type="schedule").all()
    assert (event.action, event.actor_id, event.via) == ("delete", operator.id, "api")


def test_next_answers_utc_and_local_times(client, device, as_role):
    created = client.post(
        "/api/v1/schedules", json=body_for(device), headers=as_role("operator")
    ).get_json()
    response = client.get(
        f"/api/v1/schedules/{created['id']}/next",
        query_string={"count": 3},
        headers=as_role("viewer"),
    )
    assert response.status_code == 200
    items = response.get_json()["items"]
    assert len(items) == 3
    for item in items:
        utc = datetime.fromisoformat(item["utc"])
        local = datetime.fromisoformat(item["local"])
        assert item["utc"].endswith("Z")
        assert utc == local
        assert (local.hour, local.minute) == (7, 0)
        assert local.weekday() < 5


def test_next_defaults_to_five(client, device, as_role):
    schedule = factories.ScheduleFactory(device=device)
    response = client.get(f"/api/v1/schedules/{schedule.id}/next", headers=as_role("admin"))
    assert len(response.get_json()["items"]) == 5


@pytest.mark.parametrize("value", ["0", "51", "five"])
def test_next_count_outside_1_to_50_is_422(client, device, as_role, value):
    schedule = factories.ScheduleFactory(device=device)
    response = client.get(
        f"/api/v1/schedules/{schedule.id}/next",
        query_string={"count": value},
        headers=as_role("admin"),
    )
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["count"]


# ---- sun schedules --------------------------------------------------------------------------

SUNSET = {"event": "sunset", "offset_minutes": -30, "latitude": 52.52, "longitude": 13.4}


def test_create_a_sun_schedule(client, device, as_role):
    body = body_for(device, cron=None, sun=SUNSET)
    response = client.post("/api/v1/schedules", json=body, headers=as_role("operator"))
    assert response.status_code == 201
    created = response.get_json()
    assert (created["kind"], created["sun"], created["cron"], created["description"]) == (
        "sun",
        SUNSET,
        None,
        "Every day at sunset \u2212 30 min, 52.52° N 13.40° E",
    )


def test_sun_offset_defaults_to_zero(client, device, as_role):
    sun = {"event": "dawn", "latitude": -33.87, "longitude": 151.21}
    body = body_for(device, cron=None, sun=sun)
    created = client.post("/api/v1/schedules", json=body, headers=as_role("operator")).get_json()
    assert created["sun"] == {**sun, "offset_minutes": 0}


@pytest.mark.parametrize(
    "sun, fields",
    [
        ({**SUNSET, "event": "noon"}, {"sun.event"}),
        ({**SUNSET, "latitude": 91}, {"sun.latitude"}),
        (
            {**SUNSET, "longitude": -181, "offset_minutes": 721},
            {"sun.longitude", "sun.offset_minutes"},
        ),
        ({**SUNSET, "latitude": "52.52"}, {"sun.latitude"}),
        ({**SUNSET, "offset_minutes": 1.5}, {"sun.offset_minutes"}),
        ({"event": "sunset", "latitude": 52.52}, {"sun.longitude"}),
        ({**SUNSET, "colour": "red"}, {"sun.colour"}),
        ("sunset", {"sun"}),
    ],
)
def test_bad_sun_is_422_naming_each_part(client, db, device, as_role, sun, fields):
    body = body_for(device, cron=None, sun=sun)
    response = client.post("/api/v1/schedules", json=body, headers=as_role("operator"))
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == fields
    assert count(db, Schedule) == 0


def test_sun_and_cron_together_is_422_naming_both(client, db, device, as_role):
    body = body_for(device, sun=SUNSET)
    response = client.post("/api/v1/schedules", json=body, headers=as_role("operator"))
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"cron", "sun"}


def test_patch_changes_only_the_parts_of_sun_sent(client, device, as_role):
    body = body_for(device, cron=None, sun=SUNSET)
    created = client.post("/api/v1/schedules", json=body, headers=as_role("operator")).get_json()
    response = client.patch(
        f"/api/v1/schedules/{created['id']}",
        json={"sun": {"offset_minutes": 10}},
        headers=as_role("operator"),
    )
    assert response.status_code == 200
    assert response.get_json()["sun"] == {**SUNSET, "offset_minutes": 10}


def test_patch_switches_a_cron_schedule_to_sun_and_back(client, device, as_role):
    schedule = factories.ScheduleFactory(device=device)
    path = f"/api/v1/schedules/{schedule.id}"
    to_sun = client.patch(path, json={"sun": SUNSET}, headers=as_role("operator")).get_json()
    to_cron = client.patch(path, json={"cron": "0 7 * * *"}, headers=as_role("operator"))
    assert (to_sun["kind"], to_sun["interval_seconds"], to_sun["sun"]) == ("sun", None, SUNSET)
    assert (to_cron.get_json()["kind"], to_cron.get_json()["sun"]) == ("cron", None)


def test_patch_to_sun_without_a_place_is_422(client, device, as_role):
    schedule = factories.ScheduleFactory(device=device)
    response = client.patch(
        f"/api/v1/schedules/{schedule.id}",
        json={"sun": {"event": "sunrise"}},
        headers=as_role("operator"),
    )
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"sun.latitude", "sun.longitude"}


def test_next_of_a_sun_schedule_gives_one_time_a_local_day(client, device, as_role):
    body = body_for(device, cron=None, sun={**SUNSET, "offset_minutes": 0})
    created = client.post("/api/v1/schedules", json=body, headers=as_role("operator")).get_json()
    response = client.get(
        f"/api/v1/schedules/{created['id']}/next",
        query_string={"count": 7},
        headers=as_role("viewer"),
    )
    items = response.get_json()["items"]
    local = [datetime.fromisoformat(item["local"]) for item in items]
    assert [datetime.fromisoformat(item["utc"]) for item in items] == local
    days = [t.date() for t in local]
    assert len(set(days)) == 7 and (days[-1] - days[0]).days == 6
    # Sunset in Berlin: between 15:50 and 21:35 local time all year round.
    assert all("15:50" <= t.strftime("%H:%M") <= "21:35" for t in local)
