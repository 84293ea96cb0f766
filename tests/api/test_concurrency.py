"""Races: concurrent polls never hand out a command twice; concurrent retries store once.

Each thread has its own test client and so its own app context, session and connection,
against the same database file (SQLite) or server (PostgreSQL).
"""

from __future__ import annotations

import threading
from collections import Counter

from portal.models import CommandStatus, IdempotencyRecord, Reading
from tests import factories
from tests.api.conftest import count
from tests.conftest import bearer

THREADS = 6


def run_together(app, work):
    """Run ``work(client)`` in THREADS threads started at once; return their results."""
    barrier = threading.Barrier(THREADS)
    results, errors = [None] * THREADS, []

    def target(index):
        client = app.test_client()
        try:
            barrier.wait()
            results[index] = work(client)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def test_concurrent_polls_never_hand_out_the_same_command(app, db, device):
    ids = [factories.CommandFactory(device=device).id for _ in range(40)]
    headers = bearer(device.token)

    def drain(client):
        got = []
        while True:
            response = client.get("/api/v1/device/commands?limit=3", headers=headers)
            assert response.status_code == 200, response.get_data(as_text=True)
            batch = [c["id"] for c in response.get_json()["commands"]]
            if not batch:
                return got
            got += batch

    handed = Counter(i for got in run_together(app, drain) for i in got)
    assert sorted(handed) == sorted(ids)
    assert set(handed.values()) == {1}
    db.session.expire_all()
    assert {c.status for c in device_commands(db, device)} == {CommandStatus.delivered}


def test_concurrent_retries_with_one_key_store_the_batch_once(app, db, device):
    headers = {**bearer(device.token), "Idempotency-Key": "batch-7"}
    body = {"readings": [{"metric": "t", "value": float(i)} for i in range(20)]}

    def send(client):
        response = client.post("/api/v1/device/readings", json=body, headers=headers)
        return response.status_code, response.get_json()

    results = run_together(app, send)
    assert results == [(201, {"accepted": 20})] * THREADS
    assert count(db, Reading) == 20
    assert count(db, IdempotencyRecord) == 1


def device_commands(db, device):
    from portal.models import Command

    return db.session.query(Command).filter_by(device_id=device.id).all()
