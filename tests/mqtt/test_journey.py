"""A device over MQTT end to end: readings, heartbeat, commands pushed, results, status."""

from __future__ import annotations

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


def test_readings_commands_and_results(mqtt_stack):
    device_id, token = mqtt_stack.add_device("greenhouse", kind="esp32")
    board = mqtt_stack.device_client(device_id, token).connect()
    board.publish(
        "readings", {"readings": [{"metric": "temperature", "value": 21.5}], "key": "b-1"}
    )
    wait_for(lambda: board.acks(), what="the readings ack")
    assert board.acks()[0] == {"topic": "readings", "key": "b-1", "accepted": 1}
    assert readings_of(device_id) == 1
    wait_for(lambda: mqtt_stack.device_row(device_id).mqtt_online, what="the device online")

    command = enqueue_command(None, device_id, "relay.on", {"seconds": 5})
    db.session.commit()
    pushed = wait_for(lambda: board.commands(), 5, "the command pushed")
    assert pushed[0]["id"] == command.id
    assert pushed[0]["action"] == "relay.on" and pushed[0]["payload"] == {"seconds": 5}
    board.publish(f"results/{command.id}", {"status": "succeeded", "result": {"on": True}})

    def finished():
        db.session.rollback()
        return db.session.get(Command, command.id, populate_existing=True).status

    assert wait_for(lambda: finished() is CommandStatus.succeeded, what="the result")
