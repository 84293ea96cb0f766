"""In a real browser: a details page's "Delete" opens the page that says what goes with the
object; "No, take me back" returns to the details page, "Yes, delete" deletes it and everything
with it; and a viewer's details page offers no "Delete"."""

import re

import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.services.devices import create_device
from portal.services.schedules import create_schedule
from portal.services.users import find_user
from tests.e2e.conftest import log_in


@pytest.fixture(scope="module")
def pump(live_app):
    """Oscar's device with a schedule and a command."""
    with live_app.app_context():
        device, _ = create_device(None, "delete-me-pump", owner=find_user("oscar"), kind="esp32")
        create_schedule(
            None,
            name="Pump at seven",
            device=device,
            action="relay.on",
            cron="0 7 * * *",
            timezone="Europe/Berlin",
        )
        db.session.commit()
        return device.id


def test_delete_on_a_details_page_goes_through_the_confirmation_page(page, live_server, pump):
    log_in(page, live_server, "oscar")
    details = f"{live_server}/admin/devices/details/?id={pump}&url=/admin/devices/"
    page.goto(details)

    page.get_by_test_id("delete-link").click()
    expect(page).to_have_url(re.compile(rf"/admin/devices/delete/\?id={pump}&"))
    expect(page.get_by_role("heading", name="Delete “delete-me-pump”?")).to_be_visible()
    expect(page.get_by_test_id("dependents")).to_contain_text("Pump at seven")
    page.get_by_role("link", name="No, take me back").click()
    expect(page).to_have_url(details)

    page.get_by_test_id("delete-link").click()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page).to_have_url(re.compile(r"/admin/devices/$"))
    expect(page.get_by_text("Record was successfully deleted.")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="delete-me-pump")).to_have_count(0)
    page.goto(f"{live_server}/admin/schedules/")
    expect(page.get_by_role("row").filter(has_text="Pump at seven")).to_have_count(0)


def test_a_viewer_sees_no_delete_on_a_details_page(page, live_server, live_app):
    with live_app.app_context():
        device, _ = create_device(None, "keep-me-board", owner=find_user("olga"))
        db.session.commit()
        device_id = device.id
    log_in(page, live_server, "vera")
    page.goto(f"{live_server}/admin/devices/details/?id={device_id}")
    expect(page.get_by_role("heading", level=1)).to_contain_text("keep-me-board")
    expect(page.get_by_test_id("delete-link")).to_have_count(0)
