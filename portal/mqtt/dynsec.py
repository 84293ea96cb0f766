"""Mosquitto's dynamic-security plugin, driven over an MQTT connection.

Commands go to ``$CONTROL/dynamic-security/v1`` as ``{"commands": [...]}``; the plugin answers
on ``…/response``, echoing each command's ``correlationData``.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from portal.mqtt.connection import make_client
from portal.services.mqtt_access import BrokerError

TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = TOPIC + "/response"
TIMEOUT_SECONDS = 5.0


class Dynsec:
    """Send command lists and wait for their answers, over a client someone else runs.

    The client's owner subscribes to ``RESPONSE_TOPIC`` and hands each message it gets there
    to ``on_response``.
    """

    def __init__(self, client: mqtt.Client, timeout: float = TIMEOUT_SECONDS) -> None:
        self.client = client
        self.timeout = timeout
        self._answers: dict[str, dict[str, Any]] = {}
        self._arrived = threading.Condition()
        self._ids = itertools.count(1)
        self._run_id = uuid.uuid4().hex[:8]
        self._waiting: set[str] = set()

    def on_response(self, payload: bytes | bytearray) -> None:
        try:
            responses = orjson.loads(payload).get("responses", [])
        except (orjson.JSONDecodeError, AttributeError):
            return
        with self._arrived:
            for response in responses:
                tag = response.get("correlationData") if isinstance(response, dict) else None
                # Every admin connection sees every answer: keep only those awaited here.
                if tag in self._waiting:
                    self._answers[tag] = response
            self._arrived.notify_all()

    def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        tags = [f"{self._run_id}-{next(self._ids)}" for _ in commands]
        body = {
            "commands": [{**c, "correlationData": t} for c, t in zip(commands, tags, strict=True)]
        }
        with self._arrived:
            self._waiting.update(tags)
        try:
            info = self.client.publish(TOPIC, orjson.dumps(body), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise BrokerError(f"the broker is not connected ({mqtt.error_string(info.rc)})")
            deadline = time.monotonic() + self.timeout
            with self._arrived:
                while not all(t in self._answers for t in tags):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise BrokerError("the broker did not answer a dynamic-security command")
                    self._arrived.wait(left)
                return [self._answers[t] for t in tags]
        finally:
            with self._arrived:
                self._waiting.difference_update(tags)
                for tag in tags:
                    self._answers.pop(tag, None)

    def clear_retained(self, topic: str) -> None:
        self.client.publish(topic, b"", qos=1, retain=True)


@contextlib.contextmanager
def connect(config: Mapping[str, Any], timeout: float = TIMEOUT_SECONDS) -> Iterator[Dynsec]:
    """A short-lived admin connection for one-off work (``flask mqtt sync``)."""
    client, host, port = make_client(config, f"portal-admin-{uuid.uuid4().hex[:12]}")
    dynsec = Dynsec(client, timeout)
    ready = threading.Event()
    failure: list[str] = []

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            failure.append(str(reason))
            ready.set()
            return
        client.subscribe(RESPONSE_TOPIC, qos=1)

    def on_subscribe(_c: mqtt.Client, _u: Any, _m: Any, _reasons: Any, _p: Any) -> None:
        ready.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = lambda _c, _u, message: dynsec.on_response(message.payload)
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        raise BrokerError(f"cannot reach the broker at {host}:{port}: {exc}") from None
    client.loop_start()
    try:
        if not ready.wait(timeout) or failure:
            raise BrokerError(
                f"the broker at {host}:{port} refused the login: {failure[0]}"
                if failure
                else f"the broker at {host}:{port} did not answer"
            )
        yield dynsec
    finally:
        client.disconnect()
        client.loop_stop()
