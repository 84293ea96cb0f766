"""A whole MQTT stack per test (the ``mqtt_stack`` fixture of tests/conftest.py): a Mosquitto
of its own, the app pointed at it, a bridge (in a thread, or as a ``flask mqtt run`` process for
the fault tests) and devices that speak MQTT.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from portal.extensions import db as _db
from portal.models import Device, Role
from portal.mqtt.bridge import Bridge
from portal.services import mqtt_access
from portal.services.devices import create_device
from portal.services.users import create_user
from tests.conftest import _schema_made, _truncate, make_app, wait_for

LEASE_SECONDS = 2


class DeviceClient:
    """A board speaking MQTT with paho: ``dev-<id>`` with its token, subscribed to its
    ``down/#``, remembering what it received. ``online=True`` publishes the retained status
    (and sets the will) as the contract says a device does."""

    def __init__(self, port: int, device_id: int, token: str, prefix: str = "portal") -> None:
        self.port, self.device_id, self.token = port, device_id, token
        self.root = f"{prefix}/dev-{device_id}"
        self.received: list[tuple[str, dict | bytes]] = []
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.refused: list[str] = []
        self.disconnects = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"dev-{device_id}", protocol=mqtt.MQTTv311
        )
        self.client.username_pw_set(f"dev-{device_id}", token)
        self.client.will_set(f"{self.root}/up/status", "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_args: self.subscribed.set()
        self._lock = threading.Lock()

    def _on_connect(self, client, _u, _f, reason, _p):
        if reason.is_failure:
            self.refused.append(str(reason))
            return
        self.subscribed.clear()
        client.subscribe(f"{self.root}/down/#", qos=1)
        self.connected.set()

    def _on_disconnect(self, *_args):
        self.connected.clear()
        self.disconnects += 1

    def _on_message(self, _c, _u, message):
        try:
            body = json.loads(message.payload)
        except ValueError:
            body = bytes(message.payload)
        with self._lock:
            self.received.append((message.topic.rsplit("/", 1)[-1], body))

    def connect(self, online: bool = True, timeout: float = 10) -> DeviceClient:
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        wait_for(lambda: self.connected.is_set() or self.refused, timeout, "the device to connect")
        if self.refused:
            raise ConnectionRefusedError(self.refused[0])
        # Subscribed before saying online: the bridge pushes queued commands on "online".
        wait_for(self.subscribed.is_set, timeout, "the device's SUBACK")
        if online:
            self.publish("status", "online", retain=True)
        return self

    def publish(self, what: str, payload, qos: int = 1, retain: bool = False):
        if isinstance(payload, dict | list):
            payload = json.dumps(payload)
        info = self.client.publish(f"{self.root}/up/{what}", payload, qos=qos, retain=retain)
        return info

    def acks(self) -> list[dict]:
        with self._lock:
            return [body for kind, body in self.received if kind == "acks"]

    def commands(self) -> list[dict]:
        with self._lock:
            return [body for kind, body in self.received if kind == "commands"]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Stack:
    app: object
    broker: object
    owner: object
    bridges: list = field(default_factory=list)
    devices: list = field(default_factory=list)

    def add_device(self, name: str = "board", **fields) -> tuple[int, str]:
        """A device (committed) whose broker login is in step: (id, token)."""
        device, token = create_device(None, name, owner=self.owner, **fields)
        _db.session.commit()
        device_id = device.id
        self.wait_in_step(device_id)
        return device_id, token

    def wait_in_step(self, device_id: int, timeout: float = 10) -> None:
        def in_step():
            _db.session.rollback()
            return mqtt_access.state(device_id) == mqtt_access.IN_STEP

        wait_for(in_step, timeout, f"device {device_id}'s broker login to be in step")

    def device_client(self, device_id: int, token: str) -> DeviceClient:
        client = DeviceClient(self.broker.port, device_id, token)
        self.devices.append(client)
        return client

    def start_bridge(self, client_id: str = "bridge-test") -> BridgeThread:
        bridge = BridgeThread(self.app, client_id)
        bridge.start()
        self.bridges.append(bridge)
        return bridge

    def bridge_process(self, client_id: str = "bridge-proc", **env) -> subprocess.Popen:
        """``flask mqtt run`` as its own process (for SIGKILL and SIGTERM)."""
        config = self.app.config
        environment = {
            **os.environ,
            "FLASK_APP": "portal",
            "PORTAL_DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"],
            "PORTAL_INSTANCE_PATH": self.app.instance_path,
            "PORTAL_SECRET_KEY": config["SECRET_KEY"],
            "PORTAL_MQTT_URL": config["MQTT_URL"],
            "PORTAL_MQTT_USERNAME": config["MQTT_USERNAME"],
            "PORTAL_MQTT_PASSWORD": config["MQTT_PASSWORD"],
            "PORTAL_COMMAND_LEASE_SECONDS": str(config["COMMAND_LEASE_SECONDS"]),
            **env,
        }
        flask = os.path.join(os.path.dirname(sys.executable), "flask")
        return subprocess.Popen(
            [flask, "mqtt", "run", "--client-id", client_id],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def device_row(self, device_id: int) -> Device | None:
        _db.session.rollback()
        return _db.session.execute(
            select(Device).where(Device.id == device_id).execution_options(populate_existing=True)
        ).scalar_one_or_none()


class BridgeThread:
    """A bridge in a thread of the test process, with its own app context."""

    def __init__(self, app, client_id: str) -> None:
        self.app = app
        self.stop_event = threading.Event()
        self.bridge: Bridge | None = None
        self.error: BaseException | None = None
        self.client_id = client_id
        self.thread = threading.Thread(target=self._run, daemon=True, name=client_id)

    def _run(self) -> None:
        with self.app.app_context():
            try:
                self.bridge = Bridge(self.app, self.client_id, self.stop_event)
                self.bridge.run()
            except BaseException as exc:  # reported by stop()
                self.error = exc

    def start(self) -> None:
        self.thread.start()
        wait_for(
            lambda: self.bridge is not None and self.bridge.connected.is_set(),
            10,
            "the bridge to connect",
        )

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(15)
        assert not self.thread.is_alive(), "the bridge did not stop"
        if self.error is not None:
            raise self.error


def stack(mqtt_broker, database_url, tmp_path):
    """The app (on each database) pointed at a broker of its own, an owner, a running bridge."""
    app = make_app(
        tmp_path,
        database_url,
        COMMAND_LEASE_SECONDS=LEASE_SECONDS,
        **mqtt_broker.app_config(),
    )
    with app.app_context():
        if database_url not in _schema_made:
            _db.drop_all()
            _db.create_all()
            _schema_made.add(database_url)
        owner = create_user(None, "owner", "a long enough password", role=Role.operator)
        _db.session.commit()
        stack = Stack(app, mqtt_broker, owner)
        stack.start_bridge()
        try:
            yield stack
        finally:
            for device in stack.devices:
                device.close()
            for bridge in stack.bridges:
                if bridge.thread.is_alive():
                    bridge.stop()
            _db.session.remove()
            _truncate()
            _db.engine.dispose()
