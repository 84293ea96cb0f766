"""Pages that keep themselves up to date, in Chromium: a command sent from the device page shows
``succeeded`` once the device answers, the device list's badge turns ``online`` when the device
is heard from, and the dashboard's counts move, all without a reload and within the strict CSP.
The server's side (204 while nothing changed, scoping) is tests/admin/test_live_pages.py."""

import json
import urllib.request

import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.models import Device, User
from portal.services.devices import create_device
from tests.e2e.conftest import log_in


@pytest.fixture(scope="module")
def live_device(live_app):
    live_app.config["LIVE_SECONDS"] = 1  # the default is 5; the test need not wait that long
    with live_app.app_context():
        oscar = db.session.execute(db.select(User).filter_by(username="oscar")).scalar_one()
        device, token = create_device(oscar, "live-relay", owner=oscar, kind="esp32")
        db.session.commit()
        return device.id, token


def device_call(base_url: str, token: str, path: str, body: dict | None = None):
    request = urllib.request.Request(
        f"{base_url}/api/v1/device/{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read() or b"null")


def watch_csp(page) -> list[str]:
    problems: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(m.text) if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def test_a_sent_command_shows_its_result_without_a_reload(page, live_server, live_device):
    device_id, token = live_device
    problems = watch_csp(page)
    log_in(page, live_server, "oscar")
    page.goto(f"{live_server}/admin/devices/details/?id={device_id}")
    expect(page.get_by_test_id("device-status")).to_have_text("never")
    expect(page.get_by_role("heading", name="Connect it")).to_be_visible()

    page.get_by_label("Action").fill("relay.pulse")
    page.get_by_label("Payload").fill('{"seconds": 2}')
    page.get_by_role("button", name="Send", exact=True).click()
    row = page.get_by_test_id("device-commands").get_by_role("row").filter(has_text="relay.pulse")
    expect(row.get_by_test_id("command-status")).to_have_text("queued")
    page.evaluate("window.liveMarker = 'not reloaded'")

    polled = device_call(live_server, token, "commands")
    command_id = polled["commands"][0]["id"]
    expect(row.get_by_test_id("command-status")).to_have_text("delivered")
    expect(page.get_by_test_id("device-status")).to_have_text("online")
    # The "connect it" panel gives way to a note that the device is connected.
    expect(page.get_by_test_id("connected")).to_have_text(
        "live-relay has reported in: it is connected."
    )
    expect(page.get_by_role("heading", name="Connect it")).to_have_count(0)
    device_call(
        live_server, token, f"commands/{command_id}/result", {"status": "succeeded", "result": {}}
    )
    expect(row.get_by_test_id("command-status")).to_have_text("succeeded")
    assert page.evaluate("window.liveMarker") == "not reloaded"
    # The send form kept working in the updated page, and nothing broke the CSP.
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems


def test_the_device_list_and_dashboard_follow_the_fleet(page, live_server, live_app):
    with live_app.app_context():
        oscar = db.session.execute(db.select(User).filter_by(username="oscar")).scalar_one()
        device, token = create_device(oscar, "quiet-sensor", owner=oscar)
        db.session.commit()
        device_id = device.id
    problems = watch_csp(page)
    log_in(page, live_server, "oscar")
    page.goto(f"{live_server}/admin/devices/")
    badge = page.locator(f"#device-status-{device_id}").get_by_test_id("device-status")
    expect(badge).to_have_text("never")
    page.evaluate("window.liveMarker = 'not reloaded'")
    device_call(live_server, token, "readings", {"readings": [{"metric": "t", "value": 1}]})
    expect(badge).to_have_text("online")
    assert page.evaluate("window.liveMarker") == "not reloaded"

    page.goto(f"{live_server}/admin/")
    queued = page.get_by_test_id("commands-queued")
    before = int(queued.inner_text())
    page.evaluate("window.liveMarker = 'not reloaded'")
    with live_app.app_context():
        from portal.services.commands import enqueue_command

        oscar = db.session.execute(db.select(User).filter_by(username="oscar")).scalar_one()
        enqueue_command(oscar, device_id, "relay.on", {})
        db.session.commit()
    expect(queued).to_have_text(str(before + 1))
    # "(… ago)" is written once per time, also in the part put in place.
    for time in page.locator("#dashboard-live time[data-relative]").all():
        expect(time.locator(".relative-time")).to_have_count(1)
    assert page.evaluate("window.liveMarker") == "not reloaded"
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems


def test_the_page_of_a_deleted_device_stops_asking(page, live_server, live_app):
    with live_app.app_context():
        oscar = db.session.execute(db.select(User).filter_by(username="oscar")).scalar_one()
        device, _token = create_device(oscar, "short-lived", owner=oscar)
        db.session.commit()
        device_id = device.id
    log_in(page, live_server, "oscar")
    page.goto(f"{live_server}/admin/devices/details/?id={device_id}")
    expect(page.locator("[data-live-poller]")).to_have_count(1)
    with live_app.app_context():
        from portal.services.devices import delete_device

        owner = db.session.execute(db.select(User).filter_by(username="oscar")).scalar_one()
        delete_device(owner, db.session.get(Device, device_id))
        db.session.commit()
    expect(page.locator("[data-live-poller]")).to_have_count(0)
    expect(page.get_by_test_id("device-status")).to_be_visible()  # the page is left as it was
