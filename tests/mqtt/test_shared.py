"""Several bridges at once: each message is handled by exactly one of them."""

from __future__ import annotations

import signal
import time

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import BridgeBeat, Command, CommandStatus, Reading
from portal.services.commands import enqueue_command
from tests.mqtt_stack import wait_for


def readings_of(device_id: int) -> int:
    db.session.rollback()
    return db.session.scalar(
        select(func.count()).select_from(Reading).where(Reading.device_id == device_id)
    )


def test_two_bridges_share_the_messages_and_never_both_handle_one(mqtt_stack):
    second = mqtt_stack.start_bridge("bridge-test-2")
    first = mqtt_stack.bridges[0]
    devices = [mqtt_stack.add_device(f"board-{n}") for n in range(3)]
    boards = [mqtt_stack.device_client(i, t).connect(online=False) for i, t in devices]
    per_device = 100
    for index in range(per_device):
        for board in boards:
            # No key: a message handled twice would be stored twice.
            board.publish("readings", {"readings": [{"metric": "n", "value": float(index)}]})
    for (device_id, _), board in zip(devices, boards, strict=True):
        wait_for(lambda b=board: len(b.acks()) >= per_device, 30, "every ack")
        assert readings_of(device_id) == per_device
    time.sleep(0.5)
    assert all(len(board.acks()) == per_device for board in boards)
    assert first.bridge.handled > 0 and second.bridge.handled > 0
    assert first.bridge.handled + second.bridge.handled >= 3 * per_device


def test_two_bridges_push_each_command_once(mqtt_stack):
    mqtt_stack.start_bridge("bridge-test-2")
    device_id, token = mqtt_stack.add_device()
    board = mqtt_stack.device_client(device_id, token).connect()
    wait_for(lambda: mqtt_stack.device_row(device_id).mqtt_online, what="online")
    sent = [enqueue_command(None, device_id, f"step.{n}") for n in range(20)]
    db.session.commit()
    wait_for(lambda: len(board.commands()) >= 20, 10, "every command")
    time.sleep(0.5)
    assert sorted(c["id"] for c in board.commands()) == sorted(c.id for c in sent)
    db.session.rollback()
    attempts = db.session.execute(
        select(Command.attempts).where(Command.status == CommandStatus.delivered)
    ).scalars()
    assert set(attempts) == {1}


def test_a_bridge_stopped_while_another_runs_strands_nothing(mqtt_stack):
    """Mosquitto deals shared messages to stopped members too; a bridge stopped with SIGTERM
    while another runs leaves the group, so the other one gets everything."""
    device_id, token = mqtt_stack.add_device()
    board = mqtt_stack.device_client(device_id, token).connect(online=False)
    leaving = mqtt_stack.bridge_process("bridge-leaving")
    board.publish("readings", {"readings": [{"metric": "n", "value": 0.0}], "key": "first"})
    wait_for(lambda: readings_of(device_id) == 1, 30, "the first batch")

    def both_beating():
        db.session.rollback()
        return (
            db.session.scalar(
                select(func.count()).select_from(BridgeBeat).where(BridgeBeat.connected.is_(True))
            )
            == 2
        )

    wait_for(both_beating, 30, "both bridges beating")
    leaving.send_signal(signal.SIGTERM)
    output, _ = leaving.communicate(timeout=30)
    assert leaving.returncode == 0
    assert b"left the shared subscription" in output
    for index in range(60):
        board.publish("readings", {"readings": [{"metric": "n", "value": 1.0}], "key": f"k{index}"})
    wait_for(lambda: readings_of(device_id) == 61, 15, "every batch, by the bridge still running")
