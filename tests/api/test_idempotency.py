"""Idempotency-Key: a retry gets the first answer and stores nothing new; another body is 409."""

from __future__ import annotations

from datetime import timedelta

import pytest

from portal.models import Command, IdempotencyRecord, Reading, utcnow
from tests.api.conftest import count
from tests.conftest import bearer

BATCH = {"readings": [{"metric": "t", "value": 1.0}, {"metric": "t", "value": 2.0}]}


def upload(client, device, key, body=BATCH):
    return client.post(
        "/api/v1/device/readings",
        json=body,
        headers={**bearer(device.token), "Idempotency-Key": key},
    )


def test_repeated_upload_returns_the_first_answer_and_stores_nothing_new(client, db, device):
    first = upload(client, device, "batch-1")
    again = upload(client, device, "batch-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.get_json() == first.get_json() == {"accepted": 2}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(db, Reading) == 2
    assert count(db, IdempotencyRecord) == 1


def test_same_key_with_a_different_body_is_409(client, db, device):
    upload(client, device, "batch-1")
    response = upload(client, device, "batch-1", {"readings": [{"metric": "t", "value": 9}]})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "idempotency_key_reused"
    assert count(db, Reading) == 2


def test_a_repeat_whose_work_now_fails_still_gets_the_key_decision(client, db, device):
    """The key decides before the work's own error: 409 for another body, the first answer
    for the same one."""
    upload(client, device, "batch-1")
    # Refused by the service, not by the schema.
    bad = {"readings": [{"metric": "t", "value": 1.0, "ts": "1960-01-01T00:00:00Z"}]}
    response = upload(client, device, "batch-1", bad)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "idempotency_key_reused"
    assert count(db, Reading) == 2


def test_keys_are_per_caller(client, db, device, other_device):
    upload(client, device, "batch-1")
    assert upload(client, other_device, "batch-1").status_code == 201
    assert count(db, Reading) == 4


def test_a_failed_request_is_not_remembered(client, db, device):
    bad = {"readings": [{"metric": "BAD", "value": 1}]}
    assert upload(client, device, "batch-1", bad).status_code == 422
    assert upload(client, device, "batch-1").status_code == 201
    assert count(db, Reading) == 2


def test_a_key_older_than_24_hours_can_be_used_again(client, db, device):
    upload(client, device, "batch-1")
    record = db.session.query(IdempotencyRecord).one()
    record.created_at = utcnow() - timedelta(hours=24, seconds=1)
    db.session.commit()
    response = upload(client, device, "batch-1")
    assert "Idempotent-Replayed" not in response.headers
    assert count(db, Reading) == 4


@pytest.mark.parametrize("key", ["", "x" * 129, "caf\u00e9"])
def test_bad_key_is_422(client, db, device, key):
    headers = {**bearer(device.token), "Idempotency-Key": key.encode().decode("latin-1")}
    response = client.post("/api/v1/device/readings", json=BATCH, headers=headers)
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["Idempotency-Key"]
    assert count(db, Reading) == 0


def test_repeated_command_creation_queues_one_command(client, db, device, operator, headers_for):
    headers = {**headers_for(operator), "Idempotency-Key": "cmd-1"}
    path = f"/api/v1/devices/{device.id}/commands"
    first = client.post(path, json={"action": "relay.on"}, headers=headers)
    again = client.post(path, json={"action": "relay.on"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.get_json() == first.get_json()
    assert count(db, Command) == 1


def test_purge_expired_drops_only_old_records(app, db, device, client):
    from portal.services.idempotency import purge_expired

    upload(client, device, "old")
    upload(client, device, "new")
    db.session.query(IdempotencyRecord).filter_by(key="old").one().created_at = (
        utcnow() - timedelta(days=2)
    )
    db.session.commit()
    assert purge_expired(utcnow()) == 1
    assert [r.key for r in db.session.query(IdempotencyRecord)] == ["new"]
