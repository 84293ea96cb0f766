"""The daily journey: dashboard → device → chart → send a command → a real device agent picks
it up → the result shows on the page; bulk-disable schedules; screenshots for the README."""

import os
import re
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import expect

from portal.cli.demo import _seed_readings
from portal.extensions import db
from portal.models import Schedule, utcnow
from portal.scheduling.runner import tick
from portal.services.devices import create_device
from portal.services.schedules import create_schedule
from portal.services.users import find_user
from tests.e2e.conftest import log_in

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
AGENT = Path(sys.executable).with_name("portal-agent")


def _fleet(live_app):
    with live_app.app_context():
        oscar = find_user("oscar")
        device, token = create_device(
            None,
            "pump-house",
            owner=oscar,
            kind="esp32",
            location="Pond",
            description="Pond pump controller.",
        )
        _seed_readings(device, utcnow())
        for name, cron in (("Morning pump", "0 7 * * *"), ("Evening pump", "30 19 * * *")):
            create_schedule(
                None,
                name=name,
                device=device,
                action="relay.on",
                cron=cron,
                timezone="Europe/Berlin",
                payload={"seconds": 600},
            )
        db.session.commit()
        return device.id, token


def _run_agent(base_url, token, state_dir):
    result = subprocess.run(
        [
            str(AGENT),
            "--url",
            base_url,
            "--token",
            token,
            "--once",
            "--handler",
            "relay",
            "--state-dir",
            str(state_dir),
            "--firmware",
            "1.4.2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stderr


def test_send_a_command_and_see_the_agents_result(page, live_app, live_server, tmp_path):
    device_id, token = _fleet(live_app)
    log_in(page, live_server, "oscar")
    expect(page.get_by_test_id("devices-total")).to_have_text("1")

    page.get_by_role("link", name="Devices", exact=True).click()
    page.get_by_role("row").filter(has_text="pump-house").locator("a[title='View Record']").click()
    expect(page.get_by_test_id("device-status")).to_have_text("never")
    expect(page.locator("#device-chart canvas").first).to_be_visible()
    expect(page.get_by_test_id("device-schedules")).to_contain_text("Morning pump")

    page.get_by_label("Action").fill("relay.on")
    page.get_by_label("Payload (JSON object)").fill('{"seconds": 5}')
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_text("queued for pump-house")).to_be_visible()
    expect(page.get_by_test_id("command-status").first).to_have_text("queued")

    # The page follows by itself (live parts, polled every PORTAL_LIVE_SECONDS): no reload.
    page.evaluate("window.notReloaded = true")
    _run_agent(live_server, token, tmp_path / "agent")
    expect(page.get_by_test_id("command-status").first).to_have_text("succeeded")
    expect(page.get_by_test_id("device-commands")).to_contain_text('"relay"')
    expect(page.get_by_test_id("device-status")).to_have_text("online")
    expect(page.get_by_test_id("firmware")).to_have_text("1.4.2")
    assert page.evaluate("window.notReloaded") is True
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "device.png"), full_page=True)

    with live_app.app_context():
        tick(utcnow())
    page.goto(f"{live_server}/admin/")
    expect(page.get_by_test_id("devices-online")).to_have_text("1")
    expect(page.get_by_test_id("commands-succeeded")).to_have_text("1")
    expect(page.get_by_test_id("scheduler-warning")).to_have_count(0)
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)

    page.get_by_test_id("devices-online-link").click()
    expect(page).to_have_url(re.compile(r"/admin/devices/\?flt0_status_equals=online$"))
    online = page.get_by_role("row").filter(has_text="pump-house")
    expect(online.get_by_test_id("device-status")).to_have_text("online")

    page.goto(f"{live_server}/admin/commands/")
    page.get_by_role("link", name="Add Filter").click()
    page.get_by_role("link", name="Device name").click()
    name_box = page.locator("#filter_form input.filter-val").first
    expect(name_box).to_have_attribute("list", "suggest-device_devices_name")
    expect(page.locator("#suggest-device_devices_name option")).to_have_count(1)


def test_bulk_disable_schedules(page, live_app, live_server):
    log_in(page, live_server, "oscar")
    page.goto(f"{live_server}/admin/schedules/")
    page.locator("input.action-checkbox").first.wait_for()
    page.locator("input.action-rowtoggle").check()
    page.get_by_role("button", name="With selected").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_text("schedule(s) disabled")).to_be_visible()
    with live_app.app_context():
        enabled = db.session.scalars(db.select(Schedule).where(Schedule.enabled.is_(True))).all()
        assert enabled == []


def test_pages_raise_no_csp_violations(page, live_app, live_server):
    with live_app.app_context():  # a device of its own, so its page (and chart) is shown
        device, _ = create_device(None, "csp-check-board", owner=find_user("alice"))
        _seed_readings(device, utcnow())
        db.session.commit()
        device_id = device.id
    errors = []
    page.on(
        "console",
        lambda msg: (
            errors.append(page.url + " " + msg.text + str(msg.location))
            if msg.type == "error"
            else None
        ),
    )
    log_in(page, live_server, "alice")
    for path in (
        "/admin/",
        "/admin/devices/",
        "/admin/schedules/",
        "/admin/commands/",
        "/admin/readings/",
        f"/admin/devices/details/?id={device_id}&range=7d",
    ):
        page.goto(live_server + path)
        page.wait_for_load_state("load")
    assert [e for e in errors if "Content Security Policy" in e] == [], errors[:3]
    # Nothing the pages ask for is missing (the login page once lacked its icon: /favicon.ico).
    assert [e for e in errors if "Failed to load resource" in e] == [], errors[:3]


def test_operator_sees_no_other_operators_device_anywhere(browser, live_app, live_server):
    with live_app.app_context():
        device, _ = create_device(None, "olga-hidden-sensor", owner=find_user("olga"))
        db.session.commit()
        hidden_id = device.id
    page = browser.new_context().new_page()
    log_in(page, live_server, "oscar")
    for path in (
        "/admin/",
        "/admin/devices/",
        "/admin/devices/?search=olga",
        "/admin/commands/new/",
        "/admin/schedules/new/",
    ):
        page.goto(live_server + path)
        expect(page.get_by_text("olga-hidden-sensor")).to_have_count(0)
    response = page.goto(f"{live_server}/admin/devices/details/?id={hidden_id}")
    assert response.status == 404
    csv = page.request.get(f"{live_server}/admin/devices/export/csv/").text()
    assert "olga-hidden-sensor" not in csv
