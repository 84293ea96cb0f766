"""A look at one device's topics from the broker's side, for the examples' tests.

``Watcher`` logs in as the broker's admin (the bridge's own login, which may read every topic
under the prefix and publish to the devices' ``down`` topics), subscribes to
``portal/dev-<id>/#`` and keeps every message seen there: what the board published and what the
bridge answered. ``publish`` sends a message as the bridge would (a command pushed again).
"""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.mqtt_stack import wait_for


class Watcher:
    def __init__(self, broker, device_id: int, prefix: str = "portal") -> None:
        self.root = f"{prefix}/dev-{device_id}"
        self.seen: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"examples-watcher-{device_id}",
            protocol=mqtt.MQTTv311,
        )
        self.client.username_pw_set(broker.admin_user, broker.admin_password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()
        wait_for(self._subscribed.is_set, 10, "the watcher's subscription")

    def _on_connect(self, client, _u, _f, reason, _p) -> None:
        if not reason.is_failure:
            client.subscribe(f"{self.root}/#", qos=1)

    def _on_subscribe(self, *_args) -> None:
        self._subscribed.set()

    def _on_message(self, _c, _u, message) -> None:
        with self._lock:
            self.seen.append((message.topic.removeprefix(self.root + "/"), bytes(message.payload)))

    def payloads(self, topic: str) -> list[bytes]:
        """What was seen on ``<root>/<topic>`` (e.g. ``up/readings``), oldest first."""
        with self._lock:
            return [payload for seen, payload in self.seen if seen == topic]

    def bodies(self, topic: str) -> list:
        return [json.loads(payload) for payload in self.payloads(topic)]

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(f"{self.root}/{topic}", payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
