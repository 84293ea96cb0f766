"""Making a paho-mqtt client from the portal's settings (``PORTAL_MQTT_*``)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MQTT_OFF = "MQTT is off: set PORTAL_MQTT_URL (e.g. mqtt://127.0.0.1:1883)."


class MqttOff(RuntimeError):
    """MQTT is not configured (``PORTAL_MQTT_URL`` unset)."""


def bridge_client_id(config: Mapping[str, Any]) -> str:
    return str(config.get("MQTT_CLIENT_ID") or f"portal-bridge-{socket.gethostname()}")[:128]


def make_client(
    config: Mapping[str, Any], client_id: str, *, manual_ack: bool = False
) -> tuple[mqtt.Client, str, int]:
    """A client with the bridge's login (and TLS for ``mqtts://``), and where to connect."""
    url = config.get("MQTT_URL")
    if not url:
        raise MqttOff(MQTT_OFF)
    parts = urlsplit(url)
    tls = parts.scheme == "mqtts"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if config.get("MQTT_USERNAME"):
        client.username_pw_set(config["MQTT_USERNAME"], config.get("MQTT_PASSWORD"))
    if tls:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client, parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883)
