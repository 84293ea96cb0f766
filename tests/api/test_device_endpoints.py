"""The device's side: heartbeat, readings upload, command poll and results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from portal.models import CommandStatus, Device, Reading, utcnow
from tests.api.conftest import command_row, count, readings_of
from tests.conftest import bearer

UTC = UTC


# ---- heartbeat ----------------------------------------------------------------------------


def test_heartbeat_with_empty_body_answers_device_id_and_server_time(
    client, device, device_headers
):
    response = client.post("/api/v1/device/heartbeat", headers=device_headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["device_id"] == device.id
    assert body["server_time"].endswith("Z")
    server_time = datetime.fromisoformat(body["server_time"])
    assert abs(server_time - utcnow()) < timedelta(seconds=5)


def test_heartbeat_stores_firmware_and_last_seen(client, db, device, device_headers):
    response = client.post(
        "/api/v1/device/heartbeat", json={"firmware": "1.4.2"}, headers=device_headers
    )
    assert response.status_code == 200
    db.session.expire_all()
    stored = db.session.get(Device, device.id)
    assert stored.firmware == "1.4.2"
    assert abs(stored.last_seen_at - utcnow()) < timedelta(seconds=5)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"firmware": 142}, "firmware"),
        ({"firmware": "x" * 65}, "firmware"),
        ({"version": "1.0"}, "version"),
    ],
)
def test_heartbeat_rejects_bad_fields(client, device_headers, body, field):
    response = client.post("/api/v1/device/heartbeat", json=body, headers=device_headers)
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == [field]


# ---- readings upload ----------------------------------------------------------------------


def _readings(n, **extra):
    return {"readings": [{"metric": "temperature", "value": 20 + i, **extra} for i in range(n)]}


def test_upload_stores_every_reading_and_answers_accepted(client, db, device, device_headers):
    body = {
        "readings": [
            {"metric": "temperature", "value": 21.5, "ts": "2026-11-22T10:00:00Z"},
            {"metric": "humidity", "value": 40, "ts": "2026-11-22T12:00:00+02:00"},
        ]
    }
    response = client.post("/api/v1/device/readings", json=body, headers=device_headers)
    assert response.status_code == 201
    assert response.get_json() == {"accepted": 2}
    rows = readings_of(db, device)
    assert [(r.metric, r.value, r.recorded_at) for r in rows] == [
        ("temperature", 21.5, datetime(2026, 11, 22, 10, tzinfo=UTC)),
        ("humidity", 40.0, datetime(2026, 11, 22, 10, tzinfo=UTC)),
    ]


def test_upload_without_ts_uses_server_time(client, db, device, device_headers):
    client.post("/api/v1/device/readings", json=_readings(1), headers=device_headers)
    (row,) = readings_of(db, device)
    assert abs(row.recorded_at - utcnow()) < timedelta(seconds=5)


def test_upload_of_1000_readings_is_accepted(client, db, device, device_headers):
    response = client.post("/api/v1/device/readings", json=_readings(1000), headers=device_headers)
    assert response.status_code == 201
    assert count(db, Reading) == 1000


def test_upload_is_one_insert_statement(app, client, db, device, device_headers):
    from sqlalchemy import event

    inserts = []

    def seen(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO READINGS"):
            inserts.append(executemany)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        client.post("/api/v1/device/readings", json=_readings(250), headers=device_headers)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert inserts == [False]


@pytest.mark.parametrize(
    "item, field",
    [
        ({"metric": "Temperature", "value": 1}, "readings.3.metric"),
        ({"metric": "t" * 65, "value": 1}, "readings.3.metric"),
        ({"metric": "temperature", "value": "1.5"}, "readings.3.value"),
        ({"metric": "temperature", "value": True}, "readings.3.value"),
        ({"metric": "temperature", "value": None}, "readings.3.value"),
        ({"metric": "temperature"}, "readings.3.value"),
        ({"metric": "temperature", "value": 1, "ts": "2026-11-22T10:00:00"}, "readings.3.ts"),
        ({"metric": "temperature", "value": 1, "ts": "yesterday"}, "readings.3.ts"),
        ({"metric": "temperature", "value": 1, "ts": "1969-12-31T23:59:59Z"}, "readings.3.ts"),
        ({"metric": "temperature", "value": 1, "ts": "0001-01-01T00:00:00+01:00"}, "readings.3.ts"),
        ({"metric": "temperature", "value": 1, "colour": "red"}, "readings.3.colour"),
        ({"metric": "temperature", "value": 1, "unit": "\u00b0C\n"}, "readings.3.unit"),
    ],
)
def test_bad_item_is_named_and_nothing_is_stored(client, db, device_headers, item, field):
    body = _readings(5)
    body["readings"][3] = item
    response = client.post("/api/v1/device/readings", json=body, headers=device_headers)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == [field]
    assert count(db, Reading) == 0


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_value_is_422_naming_the_item(client, db, device_headers, literal):
    raw = f'{{"readings": [{{"metric": "t", "value": 1}}, {{"metric": "t", "value": {literal}}}]}}'
    response = client.post(
        "/api/v1/device/readings", data=raw, content_type="application/json", headers=device_headers
    )
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["readings.1.value"]
    assert count(db, Reading) == 0


def test_every_bad_item_is_named(client, device_headers):
    body = _readings(4)
    body["readings"][0]["value"] = "x"
    body["readings"][2]["metric"] = "BAD"
    response = client.post("/api/v1/device/readings", json=body, headers=device_headers)
    assert set(response.get_json()["error"]["fields"]) == {"readings.0.value", "readings.2.metric"}


@pytest.mark.parametrize(
    "body, field",
    [
        ({"readings": []}, "readings"),
        ({}, "readings"),
        ({"readings": {"metric": "t"}}, "readings"),
        (_readings(1001), "readings"),
    ],
)
def test_batch_outside_1_to_1000_is_422(client, db, device_headers, body, field):
    response = client.post("/api/v1/device/readings", json=body, headers=device_headers)
    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]
    assert count(db, Reading) == 0


# ---- poll ---------------------------------------------------------------------------------


def poll(client, headers, **query):
    return client.get("/api/v1/device/commands", query_string=query, headers=headers)


def test_poll_with_nothing_queued_answers_empty_list(client, device_headers):
    response = poll(client, device_headers)
    assert response.status_code == 200
    assert response.get_json() == {"commands": []}


def test_poll_hands_out_queued_commands_and_marks_them_delivered(
    client, db, device, device_headers, make_command
):
    command = make_command(device, action="relay.on", payload={"seconds": 30})
    response = poll(client, device_headers)
    (item,) = response.get_json()["commands"]
    assert item["id"] == command.id
    assert item["action"] == "relay.on"
    assert item["payload"] == {"seconds": 30}
    assert set(item) == {"id", "action", "payload", "created_at", "expires_at"}
    assert item["expires_at"].endswith("Z")
    row = command_row(db, command.id)
    assert row.status is CommandStatus.delivered
    assert row.attempts == 1
    assert row.lease_expires_at - row.delivered_at == timedelta(seconds=60)


def test_poll_does_not_hand_out_a_leased_command_again(
    client, device, device_headers, make_command
):
    make_command(device)
    poll(client, device_headers)
    assert poll(client, device_headers).get_json() == {"commands": []}


def test_poll_respects_limit_oldest_first(client, device, device_headers, make_command):
    ids = [make_command(device).id for _ in range(3)]
    response = poll(client, device_headers, limit=2)
    assert [c["id"] for c in response.get_json()["commands"]] == ids[:2]


@pytest.mark.parametrize("limit", ["0", "101", "many"])
def test_poll_with_bad_limit_is_422(client, device_headers, limit):
    response = poll(client, device_headers, limit=limit)
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["limit"]


def test_device_a_never_gets_device_b_commands(
    client, device, other_device, device_headers, make_command
):
    make_command(other_device)
    assert poll(client, device_headers).get_json() == {"commands": []}


def test_lapsed_lease_leads_to_redelivery_counting_attempts(
    client, db, device, device_headers, make_command
):
    command = make_command(device)
    for attempt in (1, 2, 3):
        (item,) = poll(client, device_headers).get_json()["commands"]
        assert item["id"] == command.id
        assert command_row(db, command.id).attempts == attempt
        _lapse_lease(db, command.id)


def test_fifth_lapsed_lease_fails_the_command_with_no_result(
    client, db, device, device_headers, make_command
):
    command = make_command(device)
    for _ in range(5):
        assert len(poll(client, device_headers).get_json()["commands"]) == 1
        _lapse_lease(db, command.id)
    assert poll(client, device_headers).get_json() == {"commands": []}
    row = command_row(db, command.id)
    assert (row.status, row.reason, row.attempts) == (CommandStatus.failed, "no_result", 5)


def test_poll_expires_commands_past_expires_at(client, db, device, device_headers, make_command):
    stale = make_command(device, expires_at=utcnow() - timedelta(seconds=1))
    fresh = make_command(device)
    response = poll(client, device_headers, limit=1)
    assert [c["id"] for c in response.get_json()["commands"]] == [fresh.id]
    assert command_row(db, stale.id).status is CommandStatus.expired


def _lapse_lease(db, command_id):
    from portal.models import Command

    row = command_row(db, command_id)
    row.lease_expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert db.session.get(Command, command_id).status is CommandStatus.delivered


# ---- results ------------------------------------------------------------------------------


def report(client, headers, command_id, status="succeeded", result=None):
    body = {"status": status} if result is None else {"status": status, "result": result}
    return client.post(f"/api/v1/device/commands/{command_id}/result", json=body, headers=headers)


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_result_finishes_a_delivered_command(
    client, db, device, device_headers, make_command, status
):
    command = make_command(device)
    poll(client, device_headers)
    response = report(client, device_headers, command.id, status, {"relay": "on"})
    assert response.status_code == 200
    assert response.get_json() == {"id": command.id, "status": status}
    row = command_row(db, command.id)
    assert row.status is CommandStatus(status)
    assert row.result == {"relay": "on"}
    assert row.finished_at is not None


def test_repeating_the_same_result_is_harmless(client, db, device, device_headers, make_command):
    command = make_command(device)
    poll(client, device_headers)
    report(client, device_headers, command.id, result={"n": 1})
    finished_at = command_row(db, command.id).finished_at
    response = report(client, device_headers, command.id, result={"n": 1})
    assert response.status_code == 200
    assert command_row(db, command.id).finished_at == finished_at


def test_a_different_result_after_the_first_is_409(client, device, device_headers, make_command):
    command = make_command(device)
    poll(client, device_headers)
    report(client, device_headers, command.id, "succeeded")
    response = report(client, device_headers, command.id, "failed")
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "already_finished"


def test_result_for_a_cancelled_command_is_409(client, device, device_headers, make_command):
    command = make_command(device, status=CommandStatus.cancelled)
    assert report(client, device_headers, command.id).status_code == 409


def test_device_a_cannot_ack_device_b_command(
    client, db, other_device, device_headers, make_command
):
    command = make_command(other_device, status=CommandStatus.delivered)
    response = report(client, device_headers, command.id)
    assert response.status_code == 404
    assert command_row(db, command.id).status is CommandStatus.delivered


def test_result_for_unknown_command_is_404(client, device_headers):
    assert report(client, device_headers, 999999).status_code == 404


@pytest.mark.parametrize(
    "body, field",
    [
        ({"status": "done"}, "status"),
        ({"status": "succeeded", "result": [1]}, "result"),
        ({"status": "succeeded", "result": {"x": 1}, "extra": 1}, "extra"),
        ({}, "status"),
    ],
)
def test_bad_result_body_is_422(client, device, device_headers, make_command, body, field):
    command = make_command(device)
    response = client.post(
        f"/api/v1/device/commands/{command.id}/result", json=body, headers=device_headers
    )
    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]


# ---- who may call -------------------------------------------------------------------------

DEVICE_CALLS = [
    ("post", "/api/v1/device/heartbeat"),
    ("post", "/api/v1/device/readings"),
    ("get", "/api/v1/device/commands"),
    ("post", "/api/v1/device/commands/1/result"),
]


@pytest.mark.parametrize("method, path", DEVICE_CALLS)
def test_device_endpoints_without_token_are_401(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("method, path", DEVICE_CALLS)
def test_disabled_device_is_401(client, db, device, method, path):
    device.enabled = False
    db.session.commit()
    response = getattr(client, method)(path, headers=bearer(device.token))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"


@pytest.mark.parametrize("method, path", DEVICE_CALLS)
def test_personal_token_cannot_call_device_endpoints(client, headers_for, admin, method, path):
    response = getattr(client, method)(path, headers=headers_for(admin))
    assert response.status_code == 401


def test_device_last_seen_is_not_written_on_every_request(client, db, device, device_headers):
    poll(client, device_headers)
    db.session.expire_all()
    first = db.session.get(Device, device.id).last_seen_at
    poll(client, device_headers)
    db.session.expire_all()
    assert first is not None
    assert db.session.get(Device, device.id).last_seen_at == first
