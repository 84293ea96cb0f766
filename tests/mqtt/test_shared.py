"""Several bridges at once: each message is handled by exactly one of them."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Command, CommandStatus, Reading
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
