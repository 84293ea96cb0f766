"""The admin pages the README shows, each checked for what it must say and photographed into
docs/screenshots: the schedule form with its preview, a schedule's page with the commands it
sent, the delete confirmation, a new device's "connect it" panel and the API documentation."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.services.devices import create_device
from portal.services.schedules import create_schedule, run_schedule_now
from portal.services.users import find_user
from tests.e2e.conftest import log_in

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def garden(live_app):
    """A device with a schedule that has sent two commands."""
    with live_app.app_context():
        oscar = find_user("oscar")
        device, _ = create_device(oscar, "garden-valve", owner=oscar, kind="esp32")
        schedule = create_schedule(
            oscar,
            name="Water the beds",
            device=device,
            action="valve.open",
            cron="0 6 * * *",
            timezone="Europe/Berlin",
            payload={"seconds": 300},
        )
        db.session.commit()
        for _ in range(2):
            run_schedule_now(oscar, schedule)
            db.session.commit()
        return device.id, schedule.id


def test_the_schedule_form_previews_the_next_runs(page, live_server, garden):
    log_in(page, live_server, "oscar")
    page.goto(f"{live_server}/admin/schedules/new/")
    page.get_by_label("Name").fill("Evening lights")
    page.get_by_label("Kind").select_option("cron")
    page.get_by_label("Cron", exact=True).fill("30 19 * * 1-5")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    preview = page.locator("#schedule-preview")
    expect(preview.locator("[data-preview-times] tr")).to_have_count(5)
    expect(page.locator("select#device")).to_have_value("__None")  # nothing chosen for you
    shoot(page, "schedule-form")


def test_a_schedule_page_lists_the_commands_it_sent(page, live_server, garden):
    _device_id, schedule_id = garden
    log_in(page, live_server, "oscar")
    page.goto(f"{live_server}/admin/schedules/details/?id={schedule_id}")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Water the beds")
    expect(page.get_by_test_id("device-link").first).to_have_text("garden-valve")
    expect(page.get_by_text("valve.open").first).to_be_visible()
    shoot(page, "schedule")


def test_deleting_a_device_first_says_what_goes_with_it(page, live_server, garden):
    device_id, _ = garden
    log_in(page, live_server, "oscar")
    page.goto(f"{live_server}/admin/devices/delete/?id={device_id}")
    expect(page.get_by_role("heading", name="Delete “garden-valve”?")).to_be_visible()
    expect(page.get_by_text("Water the beds")).to_be_visible()
    expect(page.get_by_role("button", name="Yes, delete")).to_be_visible()
    shoot(page, "delete-device")


def test_a_new_device_shows_how_to_connect_it(page, live_server):
    log_in(page, live_server, "oscar")
    page.goto(f"{live_server}/admin/devices/new/")
    page.get_by_label("Name").fill("shed-pi")
    page.get_by_label("Kind").fill("raspberry_pi")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("heading", name="Connect it")).to_be_visible()
    expect(page.get_by_text("portal-agent --url").first).to_be_visible()
    shoot(page, "connect")


def test_the_api_documentation_page(page, live_server):
    log_in(page, live_server, "vera")
    page.goto(f"{live_server}/admin/")
    page.get_by_role("link", name="API", exact=True).click()
    expect(page).to_have_url(f"{live_server}/api/v1/docs")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    shoot(page, "api-docs")
