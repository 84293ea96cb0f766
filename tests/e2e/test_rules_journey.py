"""The rules journey (issue 15): an operator makes "greenhouse temperature > 30 for 5 min →
fan.on, clear below 27 → fan.off, notify webhook" in the admin; a real ``portal-agent`` sends
rising and then falling readings; the pages show the alert raised, the agent's fan.on, the
alert resolved, fan.off, and the webhook's deliveries (a receiver on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.models import Alert, AlertState, utcnow
from portal.scheduling.runner import tick
from portal.services import channels
from portal.services.devices import create_device
from portal.services.users import find_user
from tests.e2e.conftest import log_in
from tests.receivers import Receiver

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
AGENT = Path(sys.executable).with_name("portal-agent")


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def _greenhouse(live_app, receiver):
    with live_app.app_context():
        oscar = find_user("oscar")
        device, token = create_device(
            None, "greenhouse", owner=oscar, kind="raspberry_pi", location="Greenhouse"
        )
        channel, _ = channels.create_channel(
            oscar, name="ops webhook", kind="webhook", url=receiver.url
        )
        db.session.commit()
        return device.id, token


def _agent(base_url, token, state_dir, readings_file, readings):
    """One run of the real agent: it samples (the scripted readings), uploads, polls, runs
    the commands it gets and reports their results."""
    readings_file.write_text(json.dumps(readings))
    result = subprocess.run(
        [
            str(AGENT),
            "--url",
            base_url,
            "--token",
            token,
            "--once",
            "--source",
            "tests.e2e.journey_source:scripted",
            "--handler",
            "log",
            "--state-dir",
            str(state_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        env={
            **os.environ,
            "JOURNEY_READINGS": str(readings_file),
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        },
    )
    assert result.returncode == 0, result.stderr
    return result


def _series(values_by_seconds_ago):
    now = utcnow()
    return [
        {
            "metric": "temperature",
            "value": value,
            "ts": (now - timedelta(seconds=ago)).isoformat().replace("+00:00", "Z"),
        }
        for ago, value in values_by_seconds_ago
    ]


def _make_rule(page, live_server, device_name, channel_name):
    page.get_by_role("link", name="Rules", exact=True).click()
    page.get_by_role("link", name="Create", exact=True).click()
    page.locator("#name").fill("Greenhouse too hot")
    page.locator("#kind").select_option("threshold")
    page.locator("#device_id").select_option(label=device_name)
    page.locator("#metric").fill("temperature")
    page.locator("#op").select_option(">")
    page.locator("#value").fill("30")
    page.locator("#for_seconds").fill("300")
    page.locator("#clear_value").fill("27")
    page.locator("#severity").select_option("critical")
    page.locator("#notify").select_option(label=channel_name)
    page.locator("#on_raise_action").fill("fan.on")
    page.locator("#on_clear_action").fill("fan.off")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("temperature > 30 for 5 min, clears at 27")).to_be_visible()


def test_a_threshold_rule_from_the_form_to_the_fan_and_the_webhook(
    page, live_app, live_server, receiver, tmp_path
):
    device_id, token = _greenhouse(live_app, receiver)
    log_in(page, live_server, "oscar")
    _make_rule(page, live_server, "greenhouse", "ops webhook")
    state, readings_file = tmp_path / "agent", tmp_path / "readings.json"

    # Rising: over 30 for six minutes (the readings carry their own times).
    _agent(
        live_server,
        token,
        state,
        readings_file,
        _series([(420, 28.5), (360, 30.5), (200, 31.2), (0, 32.0)]),
    )
    with live_app.app_context():
        tick(utcnow())  # a pass: the dashboard's scheduler is alive, alert.raised is sent
    page.goto(f"{live_server}/admin/")
    alert_row = page.get_by_test_id("open-alerts")
    expect(alert_row).to_contain_text("Greenhouse too hot")
    expect(alert_row).to_contain_text("greenhouse")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "alert-dashboard.png"), full_page=True)

    # The agent ran fan.on in the same sync (the command was queued by the upload).
    page.goto(f"{live_server}/admin/devices/details/?id={device_id}")
    commands = page.get_by_test_id("device-commands")
    expect(commands).to_contain_text("fan.on")
    expect(page.get_by_test_id("command-status").first).to_have_text("succeeded")

    # Falling: below 27 clears it.
    _agent(live_server, token, state, readings_file, _series([(30, 28.0), (0, 26.5)]))
    with live_app.app_context():
        (alert,) = db.session.query(Alert).all()
        assert alert.state is AlertState.resolved
        alert_id = alert.id
        tick(utcnow())  # the pass sends the webhook deliveries
    # The agent picks up fan.off on its next sync.
    _agent(live_server, token, state, readings_file, [])
    page.goto(f"{live_server}/admin/alerts/details/?id={alert_id}")
    expect(page.get_by_text("resolved").first).to_be_visible()
    expect(page.get_by_text("fan.on")).to_be_visible()
    expect(page.get_by_text("fan.off")).to_be_visible()
    page.goto(f"{live_server}/admin/devices/details/?id={device_id}")
    expect(page.get_by_test_id("command-status").first).to_have_text("succeeded")
    expect(page.get_by_test_id("device-commands")).to_contain_text("fan.off")

    # The webhook got both events, signed; the deliveries page says so.
    events = [json.loads(r.body)["event"] for r in receiver.requests]
    assert events == ["alert.raised", "alert.resolved"]
    page.goto(f"{live_server}/admin/deliveries/")
    expect(page.get_by_role("row").filter(has_text="alert.raised")).to_contain_text("delivered")
    expect(page.get_by_role("row").filter(has_text="alert.resolved")).to_contain_text("delivered")
