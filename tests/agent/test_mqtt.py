"""``portal-agent --mqtt`` against a real stack (own Mosquitto, bridge, database): readings with
their batch keys, commands pushed and run once, the buffer across a broker outage, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Command, CommandStatus, IdempotencyRecord, Reading
from portal.services.commands import enqueue_command
from portal_agent.backoff import Backoff
from portal_agent.cli import parse_args
from portal_agent.handlers import RelayHandler
from portal_agent.ledger import CommandLedger, Outcome
from portal_agent.mqtt import MqttAgent, MqttTarget
from portal_agent.queue import ReadingQueue
from tests.agent.conftest import CountingSource
from tests.mqtt_broker import free_port
from tests.mqtt_stack import LEASE_SECONDS, wait_for

SCRIPT = os.path.join(os.path.dirname(sys.executable), "portal-agent")


def values_of(device_id: int, metric: str = "count") -> list[float]:
    db.session.rollback()
    return sorted(
        db.session.scalars(
            select(Reading.value).where(Reading.device_id == device_id, Reading.metric == metric)
        )
    )


def metrics_of(device_id: int) -> list[str]:
    db.session.rollback()
    return sorted(db.session.scalars(select(Reading.metric).where(Reading.device_id == device_id)))


def keys_of(device_id: int) -> int:
    db.session.rollback()
    return db.session.scalar(
        select(func.count())
        .select_from(IdempotencyRecord)
        .where(IdempotencyRecord.caller == f"device:{device_id}")
    )


def command_row(command_id: int) -> Command:
    db.session.rollback()
    return db.session.get(Command, command_id, populate_existing=True)


def enqueue(device_id: int, action: str, payload: dict | None = None) -> int:
    command = enqueue_command(None, device_id, action, payload or {})
    db.session.commit()
    return command.id


class Observer:
    """The broker's admin (the bridge's login) watching, and publishing on, one device's
    topics: ``seen(what)`` lists the payloads of ``…/up/<what>`` or ``…/down/<what>``."""

    def __init__(self, broker, device_id: int) -> None:
        self.root = f"portal/dev-{device_id}"
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"observer-{device_id}", protocol=mqtt.MQTTv311
        )
        self.client.username_pw_set(broker.admin_user, broker.admin_password)
        self.client.on_connect = lambda c, *_: c.subscribe(f"{self.root}/#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()
        wait_for(self.subscribed.is_set, 10, "the observer to subscribe")

    def _on_message(self, _c, _u, message) -> None:
        with self.lock:
            self.messages.append((message.topic[len(self.root) + 1 :], bytes(message.payload)))

    def seen(self, what: str) -> list[bytes]:
        with self.lock:
            return [payload for topic, payload in self.messages if topic.endswith("/" + what)]

    def publish(self, what: str, payload: bytes) -> None:
        self.client.publish(f"{self.root}/{what}", payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def observe(mqtt_stack):
    observers = []

    def start(device_id: int) -> Observer:
        observers.append(Observer(mqtt_stack.broker, device_id))
        return observers[-1]

    yield start
    for observer in observers:
        observer.close()


@pytest.fixture
def run_agent(mqtt_stack, tmp_path):
    """``run_agent(device_id, token, …)``: an MqttAgent running in a thread until the test
    ends (stopped and closed before the stack goes)."""
    running = []

    def start(device_id, token, source=None, handler=None, state=None, **options) -> MqttAgent:
        state_dir = str(state or tmp_path / f"state-{device_id}")
        options = {
            "interval": 0.05,
            "backoff": Backoff(base=0.05, cap=0.3),
            "ack_timeout": 1.0,
            **options,
        }
        agent = MqttAgent(
            MqttTarget("127.0.0.1", mqtt_stack.broker.port, False, device_id),
            token,
            ReadingQueue(state_dir, batch_size=options.pop("batch_size", 500)),
            CommandLedger(state_dir),
            source or CountingSource(0),
            handler or (lambda action, payload: {"ran": action}),
            **options,
        )
        agent.state_dir = state_dir  # for buffered() and unreported(), from the test's thread
        stop = threading.Event()
        thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
        thread.start()
        running.append((stop, thread, agent))
        return agent

    yield start
    for stop, thread, agent in running:
        stop.set()
        thread.join(15)
        assert not thread.is_alive(), "the agent did not stop"
        agent.close()


def buffered(agent: MqttAgent) -> int:
    """Readings in the agent's buffer (read with a connection of the test's own)."""
    queue = ReadingQueue(agent.state_dir)
    try:
        return len(queue)
    finally:
        queue.close()


def unreported(agent: MqttAgent) -> list[Outcome]:
    ledger = CommandLedger(agent.state_dir)
    try:
        return ledger.unreported()
    finally:
        ledger.close()


def online(mqtt_stack, device_id: int) -> bool:
    return bool(mqtt_stack.device_row(device_id).mqtt_online)


def test_readings_reach_the_portal_once_each_batch_with_its_key(mqtt_stack, run_agent):
    device_id, token = mqtt_stack.add_device("mqtt-board")
    agent = run_agent(device_id, token, CountingSource(20), batch_size=3, firmware="2.0.1")
    wait_for(lambda: len(values_of(device_id)) >= 20, what="20 readings")
    assert values_of(device_id) == list(range(20))
    assert keys_of(device_id) >= 7  # batches of at most 3 readings, each with its own key
    wait_for(lambda: buffered(agent) == 0, 5, "the buffer to empty")
    device = mqtt_stack.device_row(device_id)
    assert device.mqtt_online and device.firmware == "2.0.1"


def test_pushed_command_runs_once_and_its_result_is_stored(mqtt_stack, run_agent):
    device_id, token = mqtt_stack.add_device("relay-board")
    run_agent(device_id, token, handler=RelayHandler())
    wait_for(lambda: online(mqtt_stack, device_id), 10, "the agent online")
    command_id = enqueue(device_id, "relay.on")
    wait_for(lambda: command_row(command_id).status is CommandStatus.succeeded, 10, "the result")
    command = command_row(command_id)
    assert (command.result, command.attempts) == ({"relay": "on"}, 1)


def test_command_published_again_after_its_lease_is_not_run_again(mqtt_stack, run_agent, observe):
    device_id, token = mqtt_stack.add_device("slow-board")
    observer = observe(device_id)
    runs = []

    def handler(action, payload):
        runs.append(action)
        # Busy past the lease: the bridge publishes the command again, with the same id.
        wait_for(lambda: len(observer.seen("commands")) >= 2, 10, "the command published again")
        return {"ran": action}

    run_agent(device_id, token, handler=handler)
    wait_for(lambda: online(mqtt_stack, device_id), 10, "the agent online")
    command_id = enqueue(device_id, "valve.open")
    wait_for(
        lambda: len(observer.seen(f"results/{command_id}")) >= 2, 10 + LEASE_SECONDS, "2 results"
    )
    wait_for(lambda: command_row(command_id).status is CommandStatus.succeeded, 5, "the result")
    command = command_row(command_id)
    assert (command.result, command.attempts) == ({"ran": "valve.open"}, 2)
    assert runs == ["valve.open"]
    first, again = (json.loads(p) for p in observer.seen(f"results/{command_id}")[:2])
    assert first == again == {"status": "succeeded", "result": {"ran": "valve.open"}}


def test_command_delivered_again_after_its_result_is_not_run_again(mqtt_stack, run_agent, observe):
    device_id, token = mqtt_stack.add_device("relay-board")
    observer = observe(device_id)
    runs = []
    run_agent(device_id, token, handler=lambda action, payload: runs.append(action) or {"n": 1})
    wait_for(lambda: online(mqtt_stack, device_id), 10, "the agent online")
    command_id = enqueue(device_id, "feed.dispense", {"grams": 5})
    wait_for(lambda: command_row(command_id).status is CommandStatus.succeeded, 10, "the result")
    (message,) = observer.seen("commands")
    observer.publish("down/commands", message)  # a redelivery, as after a broker hiccup
    wait_for(lambda: len(observer.seen(f"results/{command_id}")) >= 2, 10, "the result again")
    assert runs == ["feed.dispense"]
    assert command_row(command_id).status is CommandStatus.succeeded


def test_readings_taken_while_the_broker_is_down_arrive_once(mqtt_stack, run_agent):
    device_id, token = mqtt_stack.add_device("outage-board")
    total = 60
    source = CountingSource(total)
    agent = run_agent(device_id, token, source, interval=0.05, batch_size=4)
    wait_for(lambda: len(values_of(device_id)) >= 8, 10, "the first readings")
    mqtt_stack.broker.stop()
    sent_before = source.sent
    wait_for(lambda: source.sent >= sent_before + 15, 10, "readings taken with the broker down")
    assert buffered(agent) > 0 and not agent.connected
    mqtt_stack.broker.start()
    wait_for(lambda: len(values_of(device_id)) >= total, 20, "every reading")
    assert values_of(device_id) == list(range(total))
    wait_for(lambda: buffered(agent) == 0, 5, "the buffer to empty")


def test_batch_the_portal_refuses_is_dropped_and_the_next_ones_go_on(
    mqtt_stack, run_agent, tmp_path
):
    device_id, token = mqtt_stack.add_device("bad-clock")
    state = tmp_path / "state"
    queue = ReadingQueue(str(state))
    queue.put([{"metric": "count", "value": 99, "ts": "yesterday at noon"}])
    queue.close()
    agent = run_agent(device_id, token, CountingSource(3), state=state, batch_size=1)
    wait_for(lambda: len(values_of(device_id)) >= 3, 10, "the good readings")
    wait_for(lambda: buffered(agent) == 0, 5, "the buffer to empty")
    assert values_of(device_id) == [0, 1, 2]


def test_result_waiting_from_an_earlier_run_is_sent_on_connecting(mqtt_stack, run_agent, tmp_path):
    device_id, token = mqtt_stack.add_device("crashed-board")
    command_id = enqueue(device_id, "relay.on")
    # An earlier run ran the command and stopped before its result went out.
    state = tmp_path / "state"
    ledger = CommandLedger(str(state))
    assert ledger.begin(command_id, "relay.on")
    ledger.finish(Outcome(command_id, "succeeded", {"relay": "on"}))
    ledger.close()
    runs = []
    agent = run_agent(device_id, token, handler=lambda a, p: runs.append(a), state=state)
    wait_for(lambda: command_row(command_id).status is CommandStatus.succeeded, 10, "the result")
    assert command_row(command_id).result == {"relay": "on"}
    wait_for(lambda: not unreported(agent), 5, "the result acknowledged")
    assert runs == []


# ---- the command line -------------------------------------------------------------------


def test_cli_parses_an_mqtt_url():
    args = parse_args(["--mqtt", "mqtt://dev-7@broker.local:1884", "--token", "t"])
    assert args.target == MqttTarget("broker.local", 1884, False, 7, "portal")
    assert args.url is None
    args = parse_args(
        ["--mqtt", "mqtts://broker", "--device-id", "12", "--mqtt-prefix", "acme/portal"]
        + ["--token", "t"]
    )
    assert args.target == MqttTarget("broker", 8883, True, 12, "acme/portal")
    assert (
        parse_args(["--mqtt", "mqtt://h", "--device-id", "3", "--token", "t"]).target.port == 1883
    )
    http = parse_args(["--url", "http://broker.local:5000", "--token", "t"])
    assert http.target is None and http.state_dir != args.state_dir


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mqtt", "mqtt://broker:1883"], "the device id is needed"),
        (["--mqtt", "mqtt://dev-7@broker", "--device-id", "8"], "disagree"),
        (["--mqtt", "mqtt://pi@broker"], "dev-<id>"),
        (["--mqtt", "mqtt://dev-7:secret@broker"], "not in the URL"),
        (["--mqtt", "http://dev-7@broker"], "mqtt://dev-7@host:1883"),
        (["--mqtt", "mqtt://dev-7@broker", "--mqtt-prefix", "a/+"], "topic prefix"),
        (["--mqtt", "mqtt://dev-7@broker", "--url", "http://p"], "not allowed with"),
        (["--url", "http://p", "--device-id", "7"], "--device-id goes with --mqtt"),
        ([], "one of the arguments --url --mqtt is required"),
    ],
)
def test_cli_refuses_what_does_not_add_up(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_args([*argv, "--token", "t"])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_mqtt_without_paho_says_how_to_install_it(tmp_path):
    code = (
        "import sys; sys.modules['paho'] = None; from portal_agent.cli import main; "
        f"sys.exit(main(['--mqtt', 'mqtt://dev-1@127.0.0.1:1', '--token', 't', "
        f"'--state-dir', {str(tmp_path)!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "pip install 'portal-agent[mqtt]'" in done.stderr


def test_portal_agent_mqtt_runs_commands_and_says_offline_when_stopped(mqtt_stack, tmp_path):
    device_id, token = mqtt_stack.add_device("pi")
    url = f"mqtt://dev-{device_id}@127.0.0.1:{mqtt_stack.broker.port}"
    once = subprocess.run(
        [SCRIPT, "--mqtt", url, "--token", token, "--state-dir", str(tmp_path / "s"), "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert once.returncode == 0, once.stderr
    assert metrics_of(device_id) == ["humidity", "temperature"]

    process = subprocess.Popen(
        [SCRIPT, "--mqtt", url, "--token", token, "--state-dir", str(tmp_path / "s")]
        + ["--interval", "0.2", "--handler", "relay"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: online(mqtt_stack, device_id), 10, "the agent online")
        command_id = enqueue(device_id, "relay.on")
        wait_for(lambda: command_row(command_id).status is CommandStatus.succeeded, 10, "result")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == 0, stderr
    assert command_row(command_id).result == {"relay": "on"}
    wait_for(lambda: not online(mqtt_stack, device_id), 5, "the device offline")


def test_once_without_a_broker_exits_1_and_keeps_the_readings(tmp_path):
    state = tmp_path / "s"
    done = subprocess.run(
        [SCRIPT, "--mqtt", f"mqtt://dev-5@127.0.0.1:{free_port()}", "--token", "t"]
        + ["--state-dir", str(state), "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    queue = ReadingQueue(str(state))
    assert len(queue) == 2
    queue.close()
