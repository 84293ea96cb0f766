"""The device page's "connect it" panel: the agent's command line, a curl example and the MQTT
settings, with the device's token filled in on the one page that shows it (after creating or
rotating), a placeholder otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app, request, session
from flask_login import current_user

from portal.models import Device
from portal.services import access, mqtt_access

PLACEHOLDER = "pd_…"
# The flash message that shows a new token travels in the session cookie too; the panel's copy
# rides along for the same one redirect and is taken out by the page it is meant for.
_SESSION_KEY = "connect_token"
_DEFAULT_PREFIX = "portal"
_READING = '{"readings": [{"metric": "temperature", "value": 21.5}]}'


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int
    tls: bool
    username: str
    client_id: str
    topic_prefix: str
    topic_root: str
    agent: str


@dataclass(frozen=True)
class ConnectInfo:
    token: str
    token_known: bool
    agent: str
    curl: str
    mqtt: MqttSettings | None


def remember_token(device_id: int, token: str) -> None:
    session[_SESSION_KEY] = [device_id, token]


def take_token(device_id: int) -> str | None:
    """The token remembered for this device, forgotten at once (whichever device it was for)."""
    stored = session.pop(_SESSION_KEY, None)
    if isinstance(stored, list) and len(stored) == 2 and stored[0] == device_id:
        return str(stored[1])
    return None


def connect_panel(device: Device) -> ConnectInfo | None:
    """The panel for the current user, or None: only those who may change the device see it
    (a viewer could not use a token), and only with a new token or for a never-seen device."""
    if not access.may_change_device(current_user, device):
        return None
    token = take_token(device.id)
    if token is None and device.last_seen_at is not None:
        return None
    return connect_info(device, token)


def connect_info(device: Device, token: str | None = None) -> ConnectInfo:
    shown = token or PLACEHOLDER
    url = request.url_root.rstrip("/")
    return ConnectInfo(
        token=shown,
        token_known=token is not None,
        agent=(
            f"pip install portal-agent\nportal-agent --url {url} --token {shown} --handler relay"
        ),
        curl=(
            f"curl -X POST {url}/api/v1/device/readings \\\n"
            f'  -H "Authorization: Bearer {shown}" \\\n'
            '  -H "Content-Type: application/json" \\\n'
            f"  -d '{_READING}'"
        ),
        mqtt=mqtt_settings(device, shown),
    )


def mqtt_settings(device: Device, token: str) -> MqttSettings | None:
    """None while MQTT is off (``PORTAL_MQTT_URL`` unset)."""
    config = current_app.config
    if not config["MQTT_URL"]:
        return None
    parts = urlsplit(config["MQTT_URL"])
    tls = parts.scheme == "mqtts"
    host = parts.hostname or ""
    port = parts.port or (8883 if tls else 1883)
    prefix = config["MQTT_TOPIC_PREFIX"]
    username = mqtt_access.username(device.id)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # an IPv6 address
    agent = f"portal-agent --mqtt {parts.scheme}://{username}@{netloc} --token {token}"
    if prefix != _DEFAULT_PREFIX:
        agent += f" --mqtt-prefix {prefix}"
    return MqttSettings(
        host=host,
        port=port,
        tls=tls,
        username=username,
        client_id=username,
        topic_prefix=prefix,
        topic_root=mqtt_access.topic_root(prefix, device.id),
        agent=f"pip install 'portal-agent[mqtt]'\n{agent} --handler relay",
    )
