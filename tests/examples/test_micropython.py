"""examples/micropython run by CPython against a real broker and bridge (the ``mqtt_stack``).

The board's files are copied into a folder that plays its flash (main.py, config.py,
lib/umqtt/simple.py: the real micropython-lib file) and main.py runs there in a subprocess, with
the stand-ins of tests/examples/stand_ins for what only a board has (``machine``, ``network``,
``usocket``...). ``-S`` keeps site-packages out: the example uses nothing but the standard
library, umqtt.simple and the board's modules. A pin write is a line in the stand-ins' log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from portal.extensions import db
from portal.models import Command, CommandStatus, Reading
from portal.services.commands import enqueue_command
from tests.examples.watch import Watcher
from tests.mqtt_stack import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "micropython"
STAND_INS = Path(__file__).resolve().parent / "stand_ins"
RELAY_PIN = 5
FIRMWARE = "mpy-example-test 1.0"
FAST = {  # the board's timings, shortened for tests
    "READ_EVERY_S": 0.3,
    "HEARTBEAT_EVERY_S": 1,
    "ACK_TIMEOUT_S": 1,
    "RETRY_MAX_S": 0.5,
    "LOOP_SLEEP_MS": 10,
    "KEEPALIVE_S": 10,
}


class Board:
    """main.py on a "flash" folder of its own, started and stopped like a board."""

    def __init__(self, flash: Path, port: int, device_id: int, token: str, **settings) -> None:
        self.flash = flash
        flash.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLE / "main.py", flash / "main.py")
        shutil.copytree(EXAMPLE / "lib", flash / "lib", dirs_exist_ok=True)
        config = {
            "WIFI_SSID": "test-wifi",
            "WIFI_PASSWORD": "test-wifi-password",
            "BROKER_HOST": "127.0.0.1",
            "BROKER_PORT": port,
            "DEVICE_ID": device_id,
            "DEVICE_TOKEN": token,
            "FIRMWARE": FIRMWARE,
            "RELAY_PIN": RELAY_PIN,
            "SENSOR_PIN": 34,
            **FAST,
            **settings,
        }
        (flash / "config.py").write_text(
            "".join(f"{name} = {value!r}\n" for name, value in config.items())
        )
        self.log = flash / "stand-ins.log"
        self.console = flash / "console.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Board:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join([str(STAND_INS), str(self.flash / "lib")]),
            "PYTHONDONTWRITEBYTECODE": "1",
            "STAND_IN_LOG": str(self.log),
        }
        with self.console.open("ab") as console:
            self.process = subprocess.Popen(
                [sys.executable, "-S", "-u", "-c", "import main; main.main()"],
                cwd=self.flash,
                env=env,
                stdout=console,
                stderr=subprocess.STDOUT,
            )
        return self

    def stop(self) -> int:
        """Ctrl-C, as in Thonny: the board says offline and disconnects."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(10)
        finally:
            self.kill()
        return code

    def kill(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            self.process = None

    def output(self) -> str:
        return self.console.read_text() if self.console.exists() else ""

    def pin(self, number: int) -> list[int]:
        """Every value written to a pin, in order."""
        if not self.log.exists():
            return []
        events = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [e["value"] for e in events if e.get("pin") == number]

    def ran(self) -> dict:
        return json.loads((self.flash / "ran.json").read_text())


def readings_of(device_id: int) -> list[Reading]:
    db.session.rollback()
    return list(db.session.scalars(select(Reading).where(Reading.device_id == device_id)))


def command(command_id: int) -> Command:
    db.session.rollback()
    return db.session.get(Command, command_id, populate_existing=True)


def finished(command_id: int) -> bool:
    return command(command_id).status in (CommandStatus.succeeded, CommandStatus.failed)


def test_readings_commands_once_and_a_restart(mqtt_stack, tmp_path):
    device_id, token = mqtt_stack.add_device("mpy-board", kind="esp32")
    board = Board(tmp_path / "flash", mqtt_stack.broker.port, device_id, token)
    with Watcher(mqtt_stack.broker, device_id) as watch:
        try:
            board.start()
            # Online, readings, a heartbeat with the firmware.
            wait_for(lambda: len(readings_of(device_id)) >= 4, 10, "readings stored")
            row = wait_for(
                lambda: (
                    (r := mqtt_stack.device_row(device_id)).mqtt_online
                    and r.firmware == FIRMWARE
                    and r
                ),
                10,
                "the board online with its firmware",
            )
            assert row.last_seen_at is not None
            values = {(r.metric, r.value) for r in readings_of(device_id)}
            assert values == {("temperature", 25.0), ("wifi_rssi", -55.0)}  # the stand-ins'
            assert watch.payloads("up/status")[0] == b"online"

            # A command: run, reported; relay on, then off when its seconds are up.
            on = enqueue_command(None, device_id, "relay.on", {"seconds": 1})
            db.session.commit()
            wait_for(lambda: finished(on.id), 10, "relay.on's result")
            done = command(on.id)
            assert done.status is CommandStatus.succeeded, board.output()
            assert done.result == {"relay": "on", "off_after_s": 1}
            wait_for(lambda: board.pin(RELAY_PIN) == [0, 1, 0], 5, "the relay on, then off")

            # The bridge publishes a command again when its result is late: the board does not
            # run it again, it reports the same result again.
            pushed = [p for p in watch.payloads("down/commands") if json.loads(p)["id"] == on.id][0]
            results = f"up/results/{on.id}"
            reported = len(watch.payloads(results))
            watch.publish("down/commands", pushed)
            wait_for(lambda: len(watch.payloads(results)) > reported, 5, "the result again")
            assert watch.bodies(results)[-1] == watch.bodies(results)[0]
            assert board.pin(RELAY_PIN) == [0, 1, 0]
            assert f"command {on.id} already ran" in board.output()
            assert command(on.id).status is CommandStatus.succeeded

            # relay.off, and an action the board does not know (failed, with why).
            off = enqueue_command(None, device_id, "relay.off", {})
            unknown = enqueue_command(None, device_id, "sing", {"song": "la"})
            db.session.commit()
            wait_for(lambda: finished(off.id) and finished(unknown.id), 10, "both results")
            assert command(off.id).status is CommandStatus.succeeded
            assert command(off.id).result == {"relay": "off"}
            assert command(unknown.id).status is CommandStatus.failed
            assert command(unknown.id).result == {"error": "unknown action: sing"}
            assert board.pin(RELAY_PIN) == [0, 1, 0, 0]

            # Ctrl-C: a clean goodbye, offline at once.
            assert board.stop() == 0, board.output()
            wait_for(lambda: not mqtt_stack.device_row(device_id).mqtt_online, 5, "offline")
            assert watch.payloads("up/status")[-1] == b"offline"

            # Every batch carried a key of its own, and each was stored once.
            sent = {json.loads(p)["key"]: json.loads(p) for p in watch.payloads("up/readings")}
            assert len(sent) >= 2
            acked = lambda: {a.get("key") for a in watch.bodies("down/acks")}  # noqa: E731
            wait_for(lambda: set(sent) <= acked(), 5, "every batch acknowledged")
            assert len(readings_of(device_id)) == sum(len(b["readings"]) for b in sent.values())

            # A restart (same flash): the ids it ran are remembered; pushed again, relay.on is
            # reported again and not run.
            board.start()
            wait_for(lambda: mqtt_stack.device_row(device_id).mqtt_online, 10, "back online")
            reported = len(watch.payloads(results))
            watch.publish("down/commands", pushed)
            wait_for(lambda: len(watch.payloads(results)) > reported, 5, "reported after restart")
            assert watch.bodies(results)[-1] == {
                "status": "succeeded",
                "result": {"relay": "on", "off_after_s": 1},
            }
            assert board.pin(RELAY_PIN) == [0, 1, 0, 0, 0]  # the new boot's own "off" only
            assert [entry[0] for entry in board.ran()["entries"]] == [on.id, off.id, unknown.id]
            assert board.stop() == 0, board.output()
            assert "Traceback" not in board.output(), board.output()
        finally:
            board.kill()


def test_a_batch_without_an_answer_is_sent_again_and_stored_once(mqtt_stack, tmp_path):
    device_id, token = mqtt_stack.add_device("mpy-board", kind="esp32")
    board = Board(
        tmp_path / "flash",
        mqtt_stack.broker.port,
        device_id,
        token,
        READ_EVERY_S=3600,  # one batch
        ACK_TIMEOUT_S=0.4,
    )
    with Watcher(mqtt_stack.broker, device_id) as watch:
        try:
            # No bridge for now: the broker keeps what the board sends for it, nobody answers.
            mqtt_stack.bridges[0].stop()
            board.start()
            wait_for(lambda: len(watch.payloads("up/readings")) >= 3, 10, "the batch sent 3 times")
            assert len(set(watch.payloads("up/readings"))) == 1  # the same bytes, the same key
            key = json.loads(watch.payloads("up/readings")[0])["key"]

            mqtt_stack.start_bridge()
            wait_for(lambda: f"readings {key} stored" in board.output(), 10, "the board's ack")
            answers = lambda: [a for a in watch.bodies("down/acks") if a.get("key") == key]  # noqa: E731
            copies = lambda: len(watch.payloads("up/readings"))  # noqa: E731
            wait_for(lambda: len(answers()) == copies(), 5, "an answer to every copy")
            assert copies() >= 3
            assert answers()[0] == {"topic": "readings", "key": key, "accepted": 2}
            assert all(a.get("replayed") for a in answers()[1:])
            assert len(readings_of(device_id)) == 2  # stored once
            assert board.stop() == 0, board.output()
        finally:
            board.kill()


def test_the_board_comes_back_after_the_broker_restarts(mqtt_stack, tmp_path):
    device_id, token = mqtt_stack.add_device("mpy-board", kind="esp32")
    board = Board(tmp_path / "flash", mqtt_stack.broker.port, device_id, token)
    try:
        board.start()
        wait_for(lambda: len(readings_of(device_id)) >= 2, 10, "readings stored")
        mqtt_stack.broker.restart()
        before = len(readings_of(device_id))
        wait_for(lambda: len(readings_of(device_id)) >= before + 4, 15, "readings after")
        assert "connection lost" in board.output()
        wait_for(lambda: mqtt_stack.device_row(device_id).mqtt_online, 5, "online again")
        assert board.stop() == 0, board.output()
    finally:
        board.kill()


def test_a_wrong_token_is_named_and_the_board_keeps_trying(mqtt_stack, tmp_path):
    device_id, _token = mqtt_stack.add_device("mpy-board", kind="esp32")
    board = Board(tmp_path / "flash", mqtt_stack.broker.port, device_id, "pd_not-the-token")
    refused = f"the broker refused dev-{device_id}: check DEVICE_ID and DEVICE_TOKEN"
    try:
        board.start()
        wait_for(lambda: board.output().count(refused) >= 2, 10, "two refused attempts")
        assert board.stop() == 0, board.output()
        assert readings_of(device_id) == []
    finally:
        board.kill()
