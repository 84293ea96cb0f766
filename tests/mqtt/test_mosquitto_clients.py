"""A device driven by Mosquitto's own command-line clients, as a person would try it by hand."""

from __future__ import annotations

import json
import subprocess

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Command, CommandStatus, Device, Reading
from portal.services.commands import enqueue_command
from tests.mqtt_stack import wait_for


def login(stack, device_id: int, token: str) -> list[str]:
    name = f"dev-{device_id}"
    return ["-h", "127.0.0.1", "-p", str(stack.broker.port), "-u", name, "-P", token, "-i", name]


def pub(stack, device_id: int, token: str, what: str, message: str, *extra: str) -> None:
    topic = f"portal/dev-{device_id}/up/{what}"
    args = ["mosquitto_pub", *login(stack, device_id, token), "-q", "1", "-t", topic, "-m", message]
    subprocess.run([*args, *extra], check=True, timeout=10, capture_output=True)


def test_mosquitto_pub_and_sub_as_a_device(mqtt_stack):
    device_id, token = mqtt_stack.add_device()
    pub(mqtt_stack, device_id, token, "status", "online", "-r")
    pub(mqtt_stack, device_id, token, "heartbeat", '{"firmware": "cli-1"}')
    body = {"readings": [{"metric": "humidity", "value": 40 + i} for i in range(3)], "key": "k1"}
    pub(mqtt_stack, device_id, token, "readings", json.dumps(body))

    def stored():
        db.session.rollback()
        return db.session.scalar(
            select(func.count()).select_from(Reading).where(Reading.device_id == device_id)
        )

    wait_for(lambda: stored() == 3, what="the readings")
    row = mqtt_stack.device_row(device_id)
    assert row.firmware == "cli-1" and row.mqtt_online

    topic = f"portal/dev-{device_id}/down/commands"
    listener = subprocess.Popen(
        # Line-buffered, so the debug line saying it subscribed arrives before it exits.
        ["stdbuf", "-oL", "mosquitto_sub", *login(mqtt_stack, device_id, token), "-q", "1"]
        + ["-t", topic]
        + ["-C", "1", "-W", "20", "-d"],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    wait_for(
        lambda: lines.append(listener.stdout.readline()) or "SUBACK" in lines[-1],
        what="mosquitto_sub subscribed",
    )
    command = enqueue_command(None, device_id, "fan.on", {"speed": 2})
    db.session.commit()
    out, _ = listener.communicate(timeout=20)
    listener.stdout.close()
    pushed = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert pushed["id"] == command.id and pushed["payload"] == {"speed": 2}

    pub(mqtt_stack, device_id, token, f"results/{command.id}", '{"status": "succeeded"}')

    def finished():
        db.session.rollback()
        return db.session.get(Command, command.id, populate_existing=True).status

    wait_for(lambda: finished() is CommandStatus.succeeded, what="the result")


def test_the_broker_refuses_another_devices_topics(mqtt_stack):
    mine, token = mqtt_stack.add_device("mine")
    theirs, _ = mqtt_stack.add_device("theirs")
    done = subprocess.run(
        ["mosquitto_sub", *login(mqtt_stack, mine, token), "-t", f"portal/dev-{theirs}/down/#"]
        + ["-C", "1", "-W", "3"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert "denied" in (done.stdout + done.stderr).lower()
    pub(mqtt_stack, mine, token, "readings", '{"readings": [{"metric": "t", "value": 1}]}')
    subprocess.run(
        ["mosquitto_pub", *login(mqtt_stack, mine, token), "-q", "1"]
        + [
            "-t",
            f"portal/dev-{theirs}/up/readings",
            "-m",
            '{"readings": [{"metric": "t", "value": 1}]}',
        ],
        check=True,
        timeout=10,
        capture_output=True,
    )

    def count(device_id):
        db.session.rollback()
        return db.session.scalar(
            select(func.count()).select_from(Reading).where(Reading.device_id == device_id)
        )

    wait_for(lambda: count(mine) == 1, what="my reading")
    assert count(theirs) == 0
    assert db.session.get(Device, theirs).mqtt_seen_at is None
