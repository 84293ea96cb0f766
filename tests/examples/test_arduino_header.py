"""The message logic of examples/arduino-esp32, compiled and run on this machine.

``portal_protocol.h`` is plain C++17, the very file the sketch includes. A small program
(arduino_header_test.cpp) is built with g++ against it: its checks run here, once as the
task asks (-Wall -Wextra -Werror), once with stricter warnings and the address and undefined-
behaviour sanitizers; and the messages it builds for a short session are published to a real
broker as the device, to see the bridge store them. The sketch itself (WiFi, PubSubClient,
ArduinoJson) is not compiled here: there is no Arduino toolchain on this machine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Command, CommandStatus, Reading
from portal.services.commands import enqueue_command
from tests.mqtt_stack import wait_for

HERE = Path(__file__).resolve().parent
HEADER_DIR = HERE.parents[1] / "examples" / "arduino-esp32" / "portal_device"
SOURCE = HERE / "arduino_header_test.cpp"
FLAGS = ["-std=c++17", "-Wall", "-Wextra", "-Werror"]
STRICT = [
    *FLAGS,
    "-O2",
    "-Wpedantic",
    "-Wshadow",
    "-Wconversion",
    "-Wsign-conversion",
    "-Wformat=2",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
]
GROUPS = [
    "ok topics",
    "ok json writer",
    "ok heartbeat and result",
    "ok time",
    "ok metric names",
    "ok outbox",
    "ok journal",
]


def build(out: Path, flags: list[str]) -> Path:
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("g++ is not installed: the Arduino example's header is tested with it")
    done = subprocess.run(
        [compiler, *flags, "-I", str(HEADER_DIR), str(SOURCE), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("arduino") / "arduino_header_test", FLAGS)


def check_output(run: subprocess.CompletedProcess) -> None:
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert "FAIL" not in run.stdout
    assert [line for line in lines if line.startswith("ok ")] == GROUPS
    assert re.fullmatch(r"passed \d+ checks", lines[-1]), lines[-1]
    assert int(lines[-1].split()[1]) >= 200


def test_the_header_passes_its_checks(program):
    check_output(subprocess.run([program], capture_output=True, text=True, timeout=30))


def test_the_header_under_stricter_warnings_and_sanitizers(tmp_path):
    strict = build(tmp_path / "arduino_header_test_strict", STRICT)
    run = subprocess.run([strict], capture_output=True, text=True, timeout=60)
    check_output(run)
    assert "runtime error" not in run.stderr and "AddressSanitizer" not in run.stderr


def test_what_the_header_builds_is_stored_by_the_bridge(mqtt_stack, program):
    device_id, token = mqtt_stack.add_device("arduino-board", kind="esp32")
    command = enqueue_command(None, device_id, "relay.on", {})
    db.session.commit()
    run = subprocess.run(
        [program, "session", "portal", str(device_id), str(command.id), "b00t", "1767225600"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    messages = [line.split("\t", 1) for line in run.stdout.splitlines()]
    assert [topic.rsplit("/", 1)[-1] for topic, _ in messages] == [
        "status",
        "heartbeat",
        "readings",
        "readings",
        str(command.id),
        str(command.id),
    ]

    board = mqtt_stack.device_client(device_id, token).connect(online=False)
    for topic, payload in messages:
        assert topic.startswith(board.root + "/up/"), topic
        what = topic.removeprefix(board.root + "/up/")
        board.publish(what, payload, retain=what == "status")
    acks = wait_for(lambda: len(board.acks()) >= 5 and board.acks(), 10, "the bridge's answers")
    result_topic = f"results/{command.id}"
    assert sorted(acks, key=lambda a: (a["topic"], str(a["key"]))) == [
        {"topic": "heartbeat", "key": None, "accepted": 1},
        {"topic": "readings", "key": "b00t-1", "accepted": 2},
        {"topic": "readings", "key": "b00t-2", "accepted": 1},
        {
            "topic": result_topic,
            "key": None,
            "accepted": 1,
            "id": command.id,
            "status": "succeeded",
        },
        {
            "topic": result_topic,
            "key": None,
            "accepted": 1,
            "id": command.id,
            "status": "succeeded",
        },
    ]

    db.session.rollback()
    rows = db.session.scalars(
        select(Reading).where(Reading.device_id == device_id).order_by(Reading.id)
    ).all()
    stamped = datetime(2026, 1, 1, tzinfo=UTC)
    assert [(r.metric, r.value) for r in rows] == [
        ("temperature", 21.5),
        ("wifi_rssi", -61.0),
        ("temperature", 22.25),
    ]
    assert [r.recorded_at.astimezone(UTC) for r in rows[:2]] == [stamped, stamped]
    assert rows[2].recorded_at.astimezone(UTC) > stamped  # no ts: the portal's time
    device = mqtt_stack.device_row(device_id)
    assert device.firmware == "arduino-example 1.0.0" and device.mqtt_online
    done = db.session.get(Command, command.id, populate_existing=True)
    assert done.status is CommandStatus.succeeded and done.result == {"relay": "on"}
