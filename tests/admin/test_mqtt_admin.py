"""MQTT in the admin: the device page says how the device connects, whether it is online over
MQTT, its login and topics and whether the broker has its last change; the dashboard shows the
bridges' heartbeats and warns when MQTT is configured but no bridge runs."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import delete, update

from portal.models import BridgeBeat, MqttCredentialChange, utcnow
from portal.services import fleet
from portal.services.devices import rotate_device_token
from tests.conftest import csrf_token

MQTT_URL = "mqtt://127.0.0.1:1883"


@pytest.fixture
def mqtt_on(app):
    app.config["MQTT_URL"] = MQTT_URL
    return app


def page_of(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    return response.get_data(as_text=True)


def text_of(html: str, name: str) -> str:
    """The text inside the (first) element with ``data-testid=name``: tags dropped, spaces
    squeezed (an element holding one of its own kind would be cut short)."""
    found = re.search(rf'<(\w+)[^>]*data-testid="{name}"[^>]*>(.*?)</\1>', html, re.S)
    assert found, f"no {name} on the page"
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(2)).split())


def device_page(client, device) -> str:
    return page_of(client, f"/admin/devices/details/?id={device.id}")


# ---- the device page ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "http,mqtt,shown",
    [
        (False, False, "not yet"),
        (True, False, "HTTP"),
        (False, True, "MQTT"),
        (True, True, "HTTP and MQTT"),
    ],
)
def test_the_device_page_says_how_the_device_connects(
    client, db, login_as, operator, device, http, mqtt, shown
):
    now = utcnow()
    device.http_seen_at = now if http else None
    device.mqtt_seen_at = now if mqtt else None
    db.session.commit()
    login_as(operator)
    assert text_of(device_page(client, device), "connects-over") == shown


def test_the_device_page_shows_the_mqtt_login_topics_and_status(
    client, db, login_as, operator, device, mqtt_on
):
    mqtt_on.config["MQTT_TOPIC_PREFIX"] = "farm/portal"
    device.mqtt_seen_at = utcnow()
    device.mqtt_online = True
    db.session.commit()
    login_as(operator)
    html = device_page(client, device)
    assert text_of(html, "mqtt-online") == "online now"
    assert text_of(html, "mqtt-username") == f"dev-{device.id}"
    assert text_of(html, "mqtt-topic-root") == f"farm/portal/dev-{device.id}"
    assert text_of(html, "mqtt-credentials") == "in step"


def test_a_device_not_on_mqtt_yet_is_offline_when_mqtt_is_configured(
    client, login_as, operator, device, mqtt_on
):
    login_as(operator)
    html = device_page(client, device)
    assert text_of(html, "mqtt-online") == "offline"
    assert text_of(html, "mqtt-username") == f"dev-{device.id}"


def test_without_mqtt_the_device_page_shows_no_mqtt_details(client, login_as, operator, device):
    login_as(operator)
    html = device_page(client, device)
    assert text_of(html, "connects-over") == "not yet"
    for name in ("mqtt-online", "mqtt-username", "mqtt-topic-root", "mqtt-credentials"):
        assert f'data-testid="{name}"' not in html


def test_a_device_that_used_mqtt_shows_it_even_when_mqtt_is_now_off(
    client, db, login_as, operator, device
):
    device.mqtt_seen_at = utcnow()
    db.session.commit()
    login_as(operator)
    html = device_page(client, device)
    assert text_of(html, "mqtt-online") == "offline"
    assert text_of(html, "mqtt-topic-root") == f"portal/dev-{device.id}"


def test_a_rotated_token_shows_the_login_pending_until_the_broker_has_it(
    client, db, login_as, operator, device, mqtt_on
):
    login_as(operator)
    path = f"/admin/devices/details/?id={device.id}"
    response = client.post(
        f"/admin/devices/rotate-token/?id={device.id}",
        data={"csrf_token": csrf_token(client, path)},
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert "data-testid='new-token'" in html
    state = text_of(html, "mqtt-credentials")
    assert state.startswith("pending The broker has not taken the last change yet.")
    assert "Waiting since" in state

    db.session.execute(delete(MqttCredentialChange))
    db.session.commit()
    assert text_of(device_page(client, device), "mqtt-credentials") == "in step"


def test_the_brokers_refusal_is_shown_to_admins_only(
    client, db, login_as, admin, operator, device, mqtt_on
):
    rotate_device_token(None, device)
    db.session.commit()
    db.session.execute(
        update(MqttCredentialChange).values(attempts=3, last_error="createClient: <refused>")
    )
    db.session.commit()
    login_as(operator)
    assert "The broker said" not in device_page(client, device)
    login_as(admin)
    state = text_of(device_page(client, device), "mqtt-credentials")
    assert "The broker said: &lt;refused&gt;" in state.replace("createClient: ", "")


def test_all_fields_name_the_transports(client, db, login_as, operator, device):
    device.http_seen_at = utcnow()
    db.session.commit()
    login_as(operator)
    html = device_page(client, device)
    for label in ("Last heard over HTTP", "Last heard over MQTT", "Online over MQTT"):
        assert label in html


def test_the_device_page_speaks_german_about_mqtt(client, db, login_as, operator, device, mqtt_on):
    device.http_seen_at = device.mqtt_seen_at = utcnow()
    device.mqtt_online = True
    db.session.commit()
    login_as(operator)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "de-DE,de;q=0.9"
    html = device_page(client, device)
    assert text_of(html, "connects-over") == "HTTP und MQTT"
    assert text_of(html, "mqtt-online") == "jetzt online"
    assert text_of(html, "mqtt-credentials") == "aktuell"
    assert "MQTT-Benutzername" in html and "MQTT-Zugang" in html


# ---- the dashboard -------------------------------------------------------------------------


def beat(db, client_id="portal-bridge-pi", ago=2.0, **fields):
    now = utcnow()
    fields.setdefault("connected", True)
    row = BridgeBeat(
        client_id=client_id,
        host=fields.pop("host", "pi:4242"),
        beat_at=now - timedelta(seconds=ago),
        started_at=now - timedelta(hours=1),
        **fields,
    )
    db.session.add(row)
    db.session.commit()
    return row


def test_the_dashboard_shows_a_running_bridge(client, db, login_as, viewer, mqtt_on):
    beat(db, last_message_at=utcnow() - timedelta(seconds=40), lag_seconds=0.0234, handled=17)
    login_as(viewer)
    html = page_of(client, "/admin/")
    assert 'data-testid="bridge-warning"' not in html
    row = text_of(html, "bridges")
    assert "portal-bridge-pi" in row and "pi:4242" in row
    assert text_of(html, "bridge-state") == "connected"
    assert "Last message" in row
    assert text_of(html, "bridge-lag") == "lag 23 ms"


def test_the_dashboard_warns_when_no_bridge_beat_lately(client, db, login_as, admin, mqtt_on):
    beat(db, ago=fleet.BRIDGE_QUIET_SECONDS + 15)
    login_as(admin)
    html = page_of(client, "/admin/")
    warning = text_of(html, "bridge-warning")
    assert "No MQTT bridge has reported in the last 30 s." in warning
    assert "The last one was heard from" in warning and "flask mqtt run" in warning
    assert text_of(html, "bridge-state") == "silent"


def test_the_dashboard_warns_when_no_bridge_ever_ran(client, login_as, admin, mqtt_on):
    login_as(admin)
    html = page_of(client, "/admin/")
    warning = text_of(html, "bridge-warning")
    assert "No MQTT bridge has reported" in warning and "None has reported yet." in warning


def test_the_dashboard_warns_when_the_bridge_cannot_reach_the_broker(
    client, db, login_as, admin, mqtt_on
):
    beat(db, connected=False)
    login_as(admin)
    html = page_of(client, "/admin/")
    assert "The MQTT bridge cannot reach the broker." in text_of(html, "bridge-warning")
    assert text_of(html, "bridge-state") == "not connected"


def test_one_running_bridge_of_two_is_enough(client, db, login_as, admin, mqtt_on):
    beat(db, "portal-bridge-old", ago=600, connected=False)
    beat(db, "portal-bridge-new")
    login_as(admin)
    html = page_of(client, "/admin/")
    assert 'data-testid="bridge-warning"' not in html
    assert html.count('data-testid="bridge"') == 2
    assert html.index("portal-bridge-new") < html.index("portal-bridge-old")


def test_without_mqtt_the_dashboard_shows_only_that_it_is_off(client, db, login_as, admin):
    beat(db, ago=3600)
    login_as(admin)
    html = page_of(client, "/admin/")
    assert 'data-testid="bridge-warning"' not in html
    assert 'data-testid="bridges"' not in html
    assert text_of(html, "mqtt-off") == "MQTT is off (PORTAL_MQTT_URL is not set)."


def test_the_bridge_panel_speaks_french(client, db, login_as, admin, mqtt_on):
    beat(db, ago=120)
    login_as(admin)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "fr-FR,fr;q=0.9"
    html = page_of(client, "/admin/")
    assert "Aucune passerelle MQTT ne s’est manifestée depuis 30 s." in html
    assert text_of(html, "bridge-state") == "muette"


# ---- the rule, once ------------------------------------------------------------------------


def test_bridge_health_is_quiet_only_when_mqtt_is_configured(app, db):
    now = utcnow()
    assert fleet.bridge_health(now)["quiet"] is False  # MQTT off: nothing to warn about
    app.config["MQTT_URL"] = MQTT_URL
    assert fleet.bridge_health(now)["quiet"] is True
    beat(db, ago=1)
    health = fleet.bridge_health(utcnow())
    assert (health["quiet"], health["disconnected"]) == (False, False)
    assert [b["alive"] for b in health["bridges"]] == [True]
    later = utcnow() + timedelta(seconds=fleet.BRIDGE_QUIET_SECONDS + 1)
    assert fleet.bridge_health(later)["quiet"] is True


def test_bridges_silent_for_over_a_day_are_no_longer_listed(app, db):
    app.config["MQTT_URL"] = MQTT_URL
    old = beat(db, ago=2 * 86400)
    health = fleet.bridge_health(utcnow())
    assert health["bridges"] == [] and health["last"].id == old.id and health["quiet"]
