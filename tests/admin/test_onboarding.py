"""The device page's "connect it" panel: the new token filled in right after creating (or
rotating), a placeholder on a never-seen device's page, nothing once the device was heard from;
only for those who may change the device; MQTT settings only when MQTT is configured."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select, update

from portal.extensions import db
from portal.models import Device, utcnow
from tests.conftest import csrf_token

PANEL = 'data-testid="connect-panel"'


def snippet(page: str, name: str) -> str:
    """The text of the ``<pre data-testid=name>``, unescaped as the browser would show it."""
    found = re.search(rf'<pre[^>]*data-testid="{name}"[^>]*>(.*?)</pre>', page, re.S)
    assert found, f"no {name} on the page"
    return html.unescape(found.group(1))


def create_device(client, name: str = "boiler") -> tuple[str, Device, str]:
    data = {
        "name": name,
        "kind": "esp32",
        "enabled": "y",
        "csrf_token": csrf_token(client, "/admin/devices/new/"),
    }
    page = client.post("/admin/devices/new/", data=data, follow_redirects=True)
    text = page.get_data(as_text=True)
    token = re.search(r"data-testid='new-token'>([^<]+)<", text).group(1)
    device = db.session.execute(select(Device).where(Device.name == name)).scalar_one()
    return text, device, token


def device_page(client, device) -> str:
    response = client.get(f"/admin/devices/details/?id={device.id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_after_create_the_agent_line_holds_the_new_token(client, db, login_as, operator):
    login_as(operator)
    page, _device, token = create_device(client)
    assert f"portal-agent --url http://localhost --token {token} --handler relay" in snippet(
        page, "connect-agent"
    )


def test_after_create_the_curl_example_holds_the_new_token(client, db, login_as, operator):
    login_as(operator)
    page, _device, token = create_device(client)
    curl = snippet(page, "connect-curl")
    assert "curl -X POST http://localhost/api/v1/device/readings" in curl
    assert f'-H "Authorization: Bearer {token}"' in curl


def test_the_token_is_filled_in_only_once(client, db, login_as, operator):
    login_as(operator)
    _page, device, token = create_device(client)
    again = device_page(client, device)
    assert PANEL in again
    assert token not in again
    assert "--token pd_…" in snippet(again, "connect-agent")


def test_a_never_seen_device_shows_the_panel_with_a_placeholder(
    client, db, login_as, operator, device
):
    login_as(operator)
    page = device_page(client, device)
    assert "--token pd_… --handler relay" in snippet(page, "connect-agent")
    assert "Bearer pd_…" in snippet(page, "connect-curl")
    assert 'data-testid="connect-token-hint"' in page
    assert device.token not in page


def test_rotating_the_token_fills_the_new_one_in(client, db, login_as, operator, device):
    login_as(operator)
    token = csrf_token(client, f"/admin/devices/details/?id={device.id}")
    page = client.post(
        f"/admin/devices/rotate-token/?id={device.id}",
        data={"csrf_token": token},
        follow_redirects=True,
    ).get_data(as_text=True)
    new = re.search(r"data-testid='new-token'>([^<]+)<", page).group(1)
    assert f"--token {new} " in snippet(page, "connect-agent")


def test_a_seen_device_shows_no_panel(client, db, login_as, operator, device):
    db.session.execute(update(Device).where(Device.id == device.id).values(last_seen_at=utcnow()))
    db.session.commit()
    login_as(operator)
    assert PANEL not in device_page(client, device)


@pytest.mark.parametrize("persona", ["viewer", "admin"])
def test_only_those_who_may_change_the_device_see_the_panel(
    client, db, login_as, device, persona, request
):
    login_as(request.getfixturevalue(persona))
    shown = PANEL in device_page(client, device)
    assert shown is (persona == "admin")


def test_mqtt_settings_are_absent_while_mqtt_is_off(client, db, login_as, operator, device):
    login_as(operator)
    page = device_page(client, device)
    assert 'data-testid="connect-mqtt-off"' in page
    assert 'data-testid="connect-mqtt"' not in page


@pytest.mark.parametrize(
    "url,prefix,line",
    [
        (
            "mqtt://broker.example:1883",
            "portal",
            "portal-agent --mqtt mqtt://dev-{id}@broker.example:1883 --token pd_… --handler relay",
        ),
        (
            "mqtts://broker.example",
            "plant/north",
            "portal-agent --mqtt mqtts://dev-{id}@broker.example:8883 --token pd_…"
            " --mqtt-prefix plant/north --handler relay",
        ),
    ],
)
def test_mqtt_settings_appear_when_mqtt_is_configured(
    app, client, db, login_as, operator, device, url, prefix, line
):
    app.config.update(MQTT_URL=url, MQTT_TOPIC_PREFIX=prefix)
    login_as(operator)
    page = device_page(client, device)
    settings = " ".join(re.sub(r"<[^>]+>", " ", _between(page, "connect-mqtt")).split())
    assert f"Username dev-{device.id}" in settings
    assert f"Client id dev-{device.id}" in settings
    assert f"Topic prefix {prefix}" in settings
    assert line.format(id=device.id) in snippet(page, "connect-mqtt-agent")
    assert 'data-testid="connect-mqtt-off"' not in page


def test_mqtt_settings_come_with_the_new_token_after_create(app, client, db, login_as, operator):
    app.config["MQTT_URL"] = "mqtt://broker.example:1883"
    login_as(operator)
    page, device, token = create_device(client)
    assert f"mqtt://dev-{device.id}@broker.example:1883 --token {token} " in snippet(
        page, "connect-mqtt-agent"
    )


def _between(page: str, name: str) -> str:
    found = re.search(rf'<dl[^>]*data-testid="{name}"[^>]*>(.*?)</dl>', page, re.S)
    assert found, f"no {name} on the page"
    return found.group(1)


def test_a_device_heard_from_after_create_loses_the_panel(client, db, login_as, operator):
    login_as(operator)
    _page, device, token = create_device(client)
    response = client.post(
        "/api/v1/device/heartbeat", headers={"Authorization": f"Bearer {token}"}, json={}
    )
    assert response.status_code == 200
    assert PANEL not in device_page(client, device)
