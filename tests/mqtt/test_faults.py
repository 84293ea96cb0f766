"""Faults, for real: the bridge killed with SIGKILL mid-burst, stopped with SIGTERM, the broker
restarted, the database connections cut. Nothing accepted is lost or stored twice."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import pytest
from sqlalchemy import func, select, text

from portal.extensions import db
from portal.models import IdempotencyRecord, Reading
from tests.mqtt_stack import wait_for

PER_BATCH = 10


def stored(device_id: int) -> tuple[int, int]:
    """(readings, distinct batch keys) stored for the device."""
    db.session.rollback()
    readings = db.session.scalar(
        select(func.count()).select_from(Reading).where(Reading.device_id == device_id)
    )
    keys = db.session.scalar(
        select(func.count())
        .select_from(IdempotencyRecord)
        .where(IdempotencyRecord.caller == f"device:{device_id}")
    )
    return readings, keys


def batch(index: int) -> dict:
    return {
        "readings": [{"metric": "load", "value": float(index * 100 + i)} for i in range(PER_BATCH)],
        "key": f"batch-{index}",
    }


def accepted_keys(board) -> set[str]:
    return {a["key"] for a in board.acks() if a.get("topic") == "readings" and "accepted" in a}


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM) -> str:
    process.send_signal(sig)
    try:
        out, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        pytest.fail("the bridge did not stop within 20 s:\n" + out.decode(errors="replace"))
    return out.decode(errors="replace")


def test_sigkill_during_a_burst_loses_and_doubles_nothing(mqtt_stack):
    device_id, token = mqtt_stack.add_device()
    client_id = mqtt_stack.bridges[0].client_id
    mqtt_stack.bridges[0].stop()
    bridge = mqtt_stack.bridge_process(client_id)
    board = mqtt_stack.device_client(device_id, token).connect(online=False)
    board.publish("readings", batch(0))
    wait_for(lambda: accepted_keys(board), 30, "the new bridge at work")
    total = 1000

    def publish_all():  # about 500 batches a second, for two seconds
        for index in range(1, total):
            board.publish("readings", batch(index))
            time.sleep(0.002)

    publisher = threading.Thread(target=publish_all)
    publisher.start()
    wait_for(lambda: len(accepted_keys(board)) >= 30, 30, "the first batches stored")
    bridge.kill()  # SIGKILL: no goodbye; what it had not acknowledged stays with the broker
    bridge.communicate(timeout=10)
    assert stored(device_id)[1] < total, "every batch was stored before the kill"
    publisher.join()

    restarted = mqtt_stack.bridge_process(client_id)  # the same client id: its session
    try:
        wait_for(lambda: stored(device_id)[1] == total, 60, "every batch stored")
        time.sleep(1.0)  # anything doubled would land by now
        assert stored(device_id) == (total * PER_BATCH, total)
    finally:
        stop_process(restarted)


def test_sigterm_stops_cleanly_and_what_came_meanwhile_is_handled_after(mqtt_stack):
    device_id, token = mqtt_stack.add_device()
    mqtt_stack.bridges[0].stop()
    bridge = mqtt_stack.bridge_process(mqtt_stack.bridges[0].client_id)
    board = mqtt_stack.device_client(device_id, token).connect(online=False)
    board.publish("readings", batch(0))
    wait_for(lambda: stored(device_id)[1] == 1, 30, "the first batch")
    output = stop_process(bridge)
    assert bridge.returncode == 0, output
    assert "MQTT bridge stopped." in output and "Traceback" not in output

    for index in range(1, 6):
        board.publish("readings", batch(index))
    time.sleep(0.5)
    assert stored(device_id)[1] == 1  # nobody is bridging
    again = mqtt_stack.bridge_process(mqtt_stack.bridges[0].client_id)
    try:
        wait_for(lambda: stored(device_id)[1] == 6, 30, "the batches sent while it was down")
        assert stored(device_id) == (6 * PER_BATCH, 6)
    finally:
        stop_process(again)


def test_broker_restart_mid_run(mqtt_stack):
    """The broker goes down and comes back during a stream of batches; the device re-sends
    what was not acknowledged (as the agent does) and each batch is stored once."""
    device_id, token = mqtt_stack.add_device()
    board = mqtt_stack.device_client(device_id, token).connect(online=False)
    total = 60
    for index in range(total // 2):
        board.publish("readings", batch(index))
    wait_for(lambda: len(accepted_keys(board)) >= 5, 30, "some batches stored")
    mqtt_stack.broker.restart()
    wait_for(lambda: board.connected.is_set(), 30, "the device back")
    wait_for(lambda: mqtt_stack.bridges[0].bridge.connected.is_set(), 30, "the bridge back")
    for index in range(total // 2, total):
        board.publish("readings", batch(index))

    def all_acknowledged():
        missing = [i for i in range(total) if f"batch-{i}" not in accepted_keys(board)]
        for index in missing:
            board.publish("readings", batch(index))
        return not missing

    wait_for(all_acknowledged, 60, "every batch acknowledged")
    assert stored(device_id) == (total * PER_BATCH, total)


@pytest.mark.postgres
def test_database_connections_cut_mid_burst(mqtt_stack):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("cuts PostgreSQL connections (pg_terminate_backend)")
    device_id, token = mqtt_stack.add_device()
    board = mqtt_stack.device_client(device_id, token).connect(online=False)
    total = 200
    for index in range(total):
        board.publish("readings", batch(index))
    wait_for(lambda: len(accepted_keys(board)) >= 10, 30, "some batches stored")
    with db.engine.connect() as connection:
        cut = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
        connection.commit()
    assert cut >= 1
    db.session().invalidate()  # this test's own connections were cut too
    db.session.remove()
    db.engine.dispose()
    wait_for(lambda: stored(device_id)[1] == total, 60, "every batch stored after the cut")
    time.sleep(1.0)
    assert stored(device_id) == (total * PER_BATCH, total)
    assert mqtt_stack.bridges[0].thread.is_alive()
