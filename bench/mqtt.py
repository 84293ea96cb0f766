"""Devices over MQTT (MQTT.md): ingest through the bridge, and command latency to a device.

A Mosquitto of the bench's own (tests/mqtt_broker.py's ``Broker``: its own folder and port,
dynamic security on, anonymous off) and ``flask mqtt run`` as a process, against the database
the HTTP figures were measured on. The devices are made with the portal's own service
(``create_device``), so their broker logins arrive as they do in production: the bridge applies
the credential changes, and the bench waits until none is pending.

- ``ingest_scenario``: boards (paho, logged in as ``dev-<id>`` with their token) publish the
  same 100-reading batches as the HTTP upload (bench/lua/upload.lua's bodies), each with a
  fresh ``"key"``, at QoS 1 on ``up/readings``. Each board keeps up to ``window`` batches
  waiting for their answer on ``down/acks``; the figure is the readings acknowledged per second,
  from the first publish to the last ack (the bridge answers only after its commit, and the rows
  are counted afterwards: stored = acknowledged batches × 100, each key once).
- ``command_scenario``: one board online over MQTT (retained ``online`` on ``up/status``);
  the time from just before ``POST /api/v1/devices/<id>/commands`` (a personal token) to the
  board's ``on_message`` for that command id on ``down/commands``. The board answers each one on
  ``up/results/<id>`` so nothing piles up.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import requests
from paho.mqtt.enums import CallbackAPIVersion

from bench.scenarios import USER_AGENT, count, query
from bench.seed import ADMIN_NAME, Database
from bench.server import ROOT, Gunicorn, cpu_seconds
from tests.mqtt_broker import Broker, plugin_path

PREFIX = "portal"
BATCH = 100
BODIES = 16  # distinct bodies per board, as upload.lua makes per wrk thread
ACK_TIMEOUT_S = 60.0  # every batch published must be answered within this after the last
COMMAND_TIMEOUT_S = 10.0  # a command not received by then counts as lost (and as this long)
CONNECT_TIMEOUT_S = 15.0


@dataclass
class MqttTiming:
    boards: int = 16  # device clients publishing at once
    window: int = 8  # batches each board has waiting for their ack
    commands: int = 200  # command latency samples
    gap_s: float = 0.005  # between one command received and the next POST
    bridges: int = 1  # ``flask mqtt run`` processes (one shared subscription)


def missing() -> str | None:
    """Why the MQTT scenarios cannot run here (None when they can)."""
    absent = [name for name in ("mosquitto", "mosquitto_ctrl") if shutil.which(name) is None]
    if plugin_path() is None:
        absent.append("mosquitto_dynamic_security.so")
    if absent:
        return (
            "needs Debian's mosquitto package (apt-get install -y mosquitto; or --no-mqtt): "
            "missing " + ", ".join(absent)
        )
    return None


def percentiles_us(samples: list[float]) -> dict:
    """min/mean/p50/p90/p99/p999/max in microseconds of ``samples`` (seconds), nearest rank."""
    if not samples:
        return dict.fromkeys(("min", "mean", "max", "p50", "p90", "p99", "p999"), 0)
    ordered = sorted(samples)

    def rank(p: float) -> int:
        index = max(0, min(len(ordered) - 1, -(-len(ordered) * p // 100) - 1))
        return round(ordered[int(index)] * 1e6)

    return {
        "min": round(ordered[0] * 1e6),
        "mean": round(sum(ordered) / len(ordered) * 1e6, 1),
        "max": round(ordered[-1] * 1e6),
        "p50": rank(50),
        "p90": rank(90),
        "p99": rank(99),
        "p999": rank(99.9),
    }


# ---- the stack: broker, bridge process(es), devices -----------------------------------------
class Stack:
    """A broker of the bench's own and ``flask mqtt run`` against ``database`` (context manager)."""

    def __init__(
        self, folder: Path, database: Database, env: dict[str, str], bridges: int = 1
    ) -> None:
        self.folder, self.database, self.bridge_count = folder, database, bridges
        self.broker = Broker(folder / "mosquitto")
        self.env = env
        self.bridges: list[subprocess.Popen] = []
        self.app = None

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def bridge_env(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.env,
            "PORTAL_MQTT_URL": self.broker.url,
            "PORTAL_MQTT_USERNAME": self.broker.admin_user,
            "PORTAL_MQTT_PASSWORD": self.broker.admin_password,
            "PORTAL_MQTT_TOPIC_PREFIX": PREFIX,
        }

    def start(self) -> None:
        self.broker.start()
        flask = str(Path(sys.executable).with_name("flask"))
        for i in range(self.bridge_count):
            log = open(self.folder / f"bridge-{i}.log", "ab")  # noqa: SIM115  (until stop())
            self.bridges.append(
                subprocess.Popen(
                    [flask, "mqtt", "run", "--client-id", f"bench-bridge-{i}"],
                    env=self.bridge_env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()

    def stop(self) -> None:
        for process in self.bridges:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.bridges:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.bridges = []
        self.broker.stop()

    def check_bridges(self) -> None:
        for i, process in enumerate(self.bridges):
            if process.poll() is not None:
                path = self.folder / f"bridge-{i}.log"
                lines = path.read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(
                    f"flask mqtt run exited with {process.returncode} ({path}): "
                    + " | ".join(line.strip() for line in lines)
                )

    def bridge_pids(self) -> list[int]:
        return [p.pid for p in self.bridges]

    def broker_pid(self) -> list[int]:
        return [self.broker.process.pid] if self.broker.process else []

    # -- the portal side, through its own services --

    def _portal(self):
        if self.app is None:
            from portal import create_app

            self.app = create_app(
                {
                    "DATABASE_URL": self.database.url,
                    "SECRET_KEY": self.env["PORTAL_SECRET_KEY"],
                    "INSTANCE_PATH": str(self.folder / "instance"),
                    **self.broker.app_config(),
                }
            )
        return self.app

    def create_devices(self, label: str, how_many: int) -> list[tuple[int, str]]:
        """``how_many`` devices made by ``create_device`` (their logins go through the bridge);
        returns ``(id, token)`` once the broker has every login."""
        from portal.extensions import db
        from portal.services.devices import create_device

        with self._portal().app_context():
            made = []
            for i in range(how_many):
                device, token = create_device(None, f"{label}-{i:03d}", owner=ADMIN_NAME)
                made.append((device, token))
            db.session.commit()
            out = [(device.id, token) for device, token in made]
            db.session.remove()
        self.wait_in_step()
        return out

    def wait_in_step(self, timeout: float = 60.0) -> None:
        """Until the bridge has applied every credential change (none pending)."""
        deadline = time.monotonic() + timeout
        while count(self.database, "mqtt_credential_changes"):
            self.check_bridges()
            if time.monotonic() > deadline:
                raise RuntimeError(f"device logins still pending at the broker after {timeout} s")
            time.sleep(0.05)

    def personal_token(self) -> str:
        from sqlalchemy import select

        from portal.extensions import db
        from portal.models import User
        from portal.services.tokens import create_personal_token

        with self._portal().app_context():
            user = db.session.execute(select(User).where(User.username == ADMIN_NAME)).scalar_one()
            _, token = create_personal_token(None, user, "bench commands")
            db.session.commit()
            db.session.remove()
        return token

    def dispose(self) -> None:
        if self.app is not None:
            from portal.extensions import db

            with self.app.app_context():
                db.engine.dispose()
            self.app = None


# ---- a board ---------------------------------------------------------------------------------
class Board:
    """A device over MQTT with paho: ``dev-<id>``, its token, its will, subscribed to down/#."""

    def __init__(self, port: int, device_id: int, token: str) -> None:
        self.port, self.device_id = port, device_id
        self.root = f"{PREFIX}/dev-{device_id}"
        self.ready = threading.Event()
        self.refused: str | None = None
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"dev-{device_id}", protocol=mqtt.MQTTv311
        )
        self.client.username_pw_set(f"dev-{device_id}", token)
        self.client.will_set(f"{self.root}/up/status", "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self.ready.set()
        self.client.on_message = self._on_message

    def _on_connect(self, client, _u, _f, reason, _p) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            self.ready.set()
            return
        client.subscribe(f"{self.root}/down/#", qos=1)

    def _on_message(self, _c, _u, message) -> None:
        arrived = time.perf_counter()
        kind = message.topic.rsplit("/", 1)[-1]
        try:
            body = json.loads(message.payload)
        except ValueError:
            return
        self.received(kind, body, arrived)

    def received(self, kind: str, body, arrived: float) -> None:
        """What a board does with a message on its ``down/…`` topic (``kind``: the last level)."""

    def connect(self) -> Board:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        if not self.ready.wait(CONNECT_TIMEOUT_S) or self.refused:
            raise RuntimeError(
                f"dev-{self.device_id} could not log in: {self.refused or 'no answer'}"
            )
        # Online, as MQTT.md says a device is first (retained; its will says offline).
        self.client.publish(f"{self.root}/up/status", "online", qos=1, retain=True)
        return self

    def publish(self, what: str, payload: str | bytes) -> None:
        self.client.publish(f"{self.root}/up/{what}", payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def upload_bodies(index: int, base_epoch: int, batch: int = BATCH) -> list[str]:
    """The readings arrays upload.lua sends from its thread ``index`` (same values and times)."""
    base = base_epoch - 600

    def body(start: int) -> str:
        items = []
        for i in range(1, batch + 1):
            ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + i))
            metric = "humidity" if i % 2 == 0 else "temperature"
            items.append(f'{{"metric":"{metric}","value":{20 + (i % 97) / 10:.2f},"ts":"{ts}"}}')
        return "[" + ",".join(items) + "]"

    return [body(base + b * batch + index) for b in range(1, BODIES + 1)]


class IngestBoard(Board):
    """Publishes keyed batches, keeping up to ``window`` of them waiting for their ack."""

    def __init__(
        self, port: int, device_id: int, token: str, bodies: list[str], window: int
    ) -> None:
        super().__init__(port, device_id, token)
        self.bodies, self.window = bodies, window
        self.slots = threading.Semaphore(window)
        self.waiting: dict[str, float] = {}
        self.latencies: list[float] = []
        self.sent = self.acked = self.accepted = 0
        self.errors: list[dict] = []
        self.strays = 0
        self.last_ack = 0.0

    def received(self, kind: str, body, arrived: float) -> None:
        if kind != "acks" or not isinstance(body, dict):
            return
        sent = self.waiting.pop(str(body.get("key")), None)
        if sent is None:
            self.strays += 1  # not this run's, or answered twice
            return
        self.latencies.append(arrived - sent)
        self.last_ack = arrived
        self.acked += 1
        if "error" in body:
            self.errors.append(body)
        else:
            self.accepted += int(body.get("accepted", 0))
        self.slots.release()

    def drive(self, run_id: str, deadline: float) -> None:
        """Publish until ``deadline`` (monotonic), ``window`` batches at most unanswered."""
        n = 0
        while time.monotonic() < deadline:
            if not self.slots.acquire(timeout=0.05):
                continue
            if time.monotonic() >= deadline:
                self.slots.release()
                break
            key = f"{run_id}-{self.device_id}-{n}"
            payload = f'{{"key":"{key}","readings":{self.bodies[n % len(self.bodies)]}}}'
            self.waiting[key] = time.perf_counter()
            self.publish("readings", payload)
            n += 1
        self.sent += n

    def reset(self) -> None:
        self.slots = threading.Semaphore(self.window)
        self.waiting = {}  # a late answer to an earlier round is a stray, not a release
        self.latencies, self.errors = [], []
        self.sent = self.acked = self.accepted = self.strays = 0
        self.last_ack = 0.0


def _one_round(boards: list[IngestBoard], seconds: float, run_id: str, check) -> dict:
    for board in boards:
        board.reset()
    started = time.perf_counter()
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=b.drive, args=(run_id, deadline), name=f"dev-{b.device_id}")
        for b in boards
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    give_up = time.monotonic() + ACK_TIMEOUT_S
    while any(b.waiting for b in boards) and time.monotonic() < give_up:
        check()  # a bridge that died answers nothing: say so now
        time.sleep(0.005)
    unanswered = sum(len(b.waiting) for b in boards)
    ended = max((b.last_ack for b in boards), default=started)
    return {"started": started, "seconds": max(ended - started, 1e-9), "unanswered": unanswered}


# ---- the scenarios ---------------------------------------------------------------------------
def ingest_scenario(
    stack: Stack, database: Database, seconds: float, warmup: float, mqtt_timing: MqttTiming
) -> dict:
    """Readings in 100-reading batches over MQTT; every acknowledged batch stored once."""
    devices = stack.create_devices(f"mqtt-ingest-{uuid.uuid4().hex[:6]}", mqtt_timing.boards)
    base = int(time.time())
    boards = [
        IngestBoard(stack.broker.port, device_id, token, upload_bodies(i, base), mqtt_timing.window)
        for i, (device_id, token) in enumerate(devices)
    ]
    try:
        for board in boards:
            board.connect()
        run_id = uuid.uuid4().hex[:12]
        if warmup:
            _one_round(boards, warmup, "warmup" + run_id, stack.check_bridges)
        stack.check_bridges()
        before = count(database, "readings")
        bridge_cpu, broker_cpu = cpu_seconds(stack.bridge_pids()), cpu_seconds(stack.broker_pid())
        own_cpu = time.process_time()
        timed = _one_round(boards, seconds, run_id, stack.check_bridges)
        bridge_cpu = cpu_seconds(stack.bridge_pids()) - bridge_cpu
        broker_cpu = cpu_seconds(stack.broker_pid()) - broker_cpu
        own_cpu = time.process_time() - own_cpu
        stack.check_bridges()
    finally:
        for board in boards:
            board.close()
    stored = count(database, "readings") - before
    completed = query(
        database, "SELECT count(*) FROM idempotency_records WHERE key LIKE ?", (run_id + "-%",)
    )[0][0]
    sent = sum(b.sent for b in boards)
    acked = sum(b.acked for b in boards)
    errors = [e for b in boards for e in b.errors]
    accepted = sum(b.accepted for b in boards)
    elapsed = timed["seconds"]
    batches = max(acked, 1)
    return {
        "requests": sent,
        "ok": acked - len(errors),
        "non2xx": len(errors),
        "sample_bad": json.dumps(errors[0])[:300] if errors else None,
        "errors": {"unanswered": timed["unanswered"], "stray_acks": sum(b.strays for b in boards)},
        "latency_us": percentiles_us([x for b in boards for x in b.latencies]),
        "seconds": round(elapsed, 3),
        "rps": acked / elapsed,
        "connections": len(boards),
        "window": mqtt_timing.window,
        "bridges": mqtt_timing.bridges,
        "cpu_ms_per_req": bridge_cpu * 1000 / batches,
        "broker_cpu_ms_per_req": broker_cpu * 1000 / batches,
        "client_cpu_ms_per_req": own_cpu * 1000 / batches,
        "batch": BATCH,
        "accepted": accepted,
        "stored": stored,
        "completed_requests": completed,
        "stored_ok": stored == completed * BATCH == accepted and timed["unanswered"] == 0,
        "rows_per_s": accepted / elapsed,
    }


class CommandBoard(Board):
    """Notes when each command arrives and answers it on ``up/results/<id>``."""

    def __init__(self, port: int, device_id: int, token: str) -> None:
        super().__init__(port, device_id, token)
        self.arrived: dict[int, float] = {}
        self.duplicates = 0
        self.changed = threading.Condition()

    def received(self, kind: str, body, arrived: float) -> None:
        if kind != "commands" or not isinstance(body, dict) or "id" not in body:
            return
        command_id = int(body["id"])
        with self.changed:
            if command_id in self.arrived:
                self.duplicates += 1
            else:
                self.arrived[command_id] = arrived
            self.changed.notify_all()
        self.publish(
            f"results/{command_id}", json.dumps({"status": "succeeded", "result": {"ok": True}})
        )

    def wait_for(self, command_id: int, timeout: float) -> float | None:
        with self.changed:
            self.changed.wait_for(lambda: command_id in self.arrived, timeout)
            return self.arrived.get(command_id)


def command_scenario(
    stack: Stack, server: Gunicorn, database: Database, mqtt_timing: MqttTiming
) -> dict:
    """``POST /api/v1/devices/<id>/commands`` → the device's ``on_message``, one at a time."""
    ((device_id, token),) = stack.create_devices(f"mqtt-commands-{uuid.uuid4().hex[:6]}", 1)
    personal = stack.personal_token()
    board = CommandBoard(stack.broker.port, device_id, token)
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {personal}", "User-Agent": USER_AGENT})
    url = f"{server.url}/api/v1/devices/{device_id}/commands"
    latencies: list[float] = []
    posts: list[float] = []  # the POST alone (until its 201)
    pushes: list[float] = []  # from the 201 to the device's on_message
    non2xx, lost, sample_bad = 0, 0, None
    try:
        board.connect()
        deadline = time.monotonic() + 30
        while not query(database, "SELECT mqtt_online FROM devices WHERE id = ?", (device_id,))[0][
            0
        ]:
            stack.check_bridges()
            if time.monotonic() > deadline:
                raise RuntimeError(f"device {device_id} not online over MQTT after 30 s")
            time.sleep(0.02)
        bridge_cpu = cpu_seconds(stack.bridge_pids())
        started = time.perf_counter()
        for i in range(mqtt_timing.commands):
            sent = time.perf_counter()
            answer = session.post(url, json={"action": "relay.on", "payload": {"n": i}}, timeout=30)
            answered = time.perf_counter()
            posts.append(answered - sent)
            if answer.status_code != 201:
                non2xx += 1
                sample_bad = sample_bad or f"{answer.status_code} {answer.text[:300]}"
                continue
            arrived = board.wait_for(answer.json()["id"], COMMAND_TIMEOUT_S)
            if arrived is None:
                lost += 1
                latencies.append(COMMAND_TIMEOUT_S)
            else:
                latencies.append(arrived - sent)
                pushes.append(arrived - answered)
            time.sleep(mqtt_timing.gap_s)
        elapsed = time.perf_counter() - started
        bridge_cpu = cpu_seconds(stack.bridge_pids()) - bridge_cpu
        stack.check_bridges()
    finally:
        session.close()
        board.close()
    done = max(len(latencies), 1)
    return {
        "requests": mqtt_timing.commands,
        "ok": len(latencies) - lost,
        "non2xx": non2xx,
        "sample_bad": sample_bad,
        "errors": {"lost": lost, "duplicates": board.duplicates},
        "latency_us": percentiles_us(latencies),
        "post_latency_us": percentiles_us(posts),
        "push_latency_us": percentiles_us(pushes),
        "seconds": round(elapsed, 3),
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "connections": 1,
        "cpu_ms_per_req": bridge_cpu * 1000 / done,
        "received": len(board.arrived),
        "timeout_s": COMMAND_TIMEOUT_S,
    }


@dataclass
class Outcome:
    figures: dict[str, dict] = field(default_factory=dict)
    error: str | None = None


def run(
    work: Path,
    database: Database,
    env: dict[str, str],
    server: Gunicorn,
    seconds: float,
    warmup: float,
    mqtt_timing: MqttTiming,
    log,
) -> Outcome:
    """Both MQTT scenarios on one database; a failure is reported, not raised."""
    outcome = Outcome()
    reason = missing()
    if reason:
        outcome.error = f"MQTT not measured: {reason}"
        return outcome
    stack = Stack(work / f"mqtt-{database.kind}", database, env, mqtt_timing.bridges)
    try:
        with stack:
            log(
                f"{database.kind}: MQTT on {stack.broker.url}, {mqtt_timing.bridges} bridge(s), "
                f"{mqtt_timing.boards} boards × {mqtt_timing.window} batches in flight"
            )
            outcome.figures["mqtt_upload_100"] = ingest_scenario(
                stack, database, seconds, warmup, mqtt_timing
            )
            log(
                f"{database.kind}: MQTT command latency, {mqtt_timing.commands} commands "
                "API → device"
            )
            outcome.figures["mqtt_command_latency"] = command_scenario(
                stack, server, database, mqtt_timing
            )
    except Exception as exc:  # the other figures stand; this one is reported as not measured
        outcome.error = f"MQTT: {exc.__class__.__name__}: {exc}"
    finally:
        stack.dispose()
    return outcome
