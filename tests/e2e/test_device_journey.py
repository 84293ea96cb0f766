"""The first journey in a real browser: log in, create a device, see its token once, edit,
delete (through the page that says what goes with it), log out; and an operator never sees
another operator's device."""

import re
from pathlib import Path

from playwright.sync_api import expect

from tests.e2e.conftest import log_in

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def test_operator_manages_a_device_from_login_to_logout(page, live_server):
    log_in(page, live_server, "oscar")
    expect(page).to_have_url(f"{live_server}/admin/")
    expect(page.get_by_test_id("current-user")).to_contain_text("oscar")

    page.get_by_role("link", name="Devices", exact=True).click()
    page.get_by_role("link", name="Create", exact=True).click()
    page.get_by_label("Name").fill("greenhouse-esp32")
    page.get_by_label("Kind").fill("esp32")
    page.get_by_label("Location").fill("Greenhouse")
    page.get_by_role("button", name="Save", exact=True).click()

    token = page.get_by_test_id("new-token")
    expect(token).to_have_text(re.compile(r"^pd_[A-Za-z0-9_-]{40,}$"))
    page.reload()
    expect(page.get_by_test_id("new-token")).to_have_count(0)

    page.get_by_role("link", name="Edit", exact=True).click()
    page.get_by_label("Location").fill("Greenhouse, bench 2")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Greenhouse, bench 2")).to_be_visible()

    page.goto(f"{live_server}/admin/devices/")
    row = page.get_by_role("row").filter(has_text="greenhouse-esp32")
    row.get_by_role("link", name="Delete Record").click()
    expect(page.get_by_role("heading", name="Delete “greenhouse-esp32”?")).to_be_visible()
    expect(page.get_by_text("Nothing else is deleted with it.")).to_be_visible()
    page.get_by_role("link", name="No, take me back").click()
    expect(page).to_have_url(re.compile(r"/admin/devices/(\?.*)?$"))
    row.get_by_role("link", name="Delete Record").click()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.get_by_text("Record was successfully deleted.")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="greenhouse-esp32")).to_have_count(0)

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{live_server}/login")
    page.goto(f"{live_server}/admin/devices/")
    expect(page).to_have_url(f"{live_server}/login?next=/admin/devices/")


def test_operator_does_not_see_another_operators_device(browser, live_server):
    olga = browser.new_context().new_page()
    log_in(olga, live_server, "olga")
    olga.goto(f"{live_server}/admin/devices/new/")
    olga.get_by_label("Name").fill("olga-secret-board")
    olga.get_by_role("button", name="Save", exact=True).click()
    expect(olga.get_by_test_id("new-token")).to_be_visible()

    oscar = browser.new_context().new_page()
    log_in(oscar, live_server, "oscar")
    oscar.goto(f"{live_server}/admin/devices/")
    expect(oscar.get_by_text("olga-secret-board")).to_have_count(0)
    oscar.goto(f"{live_server}/admin/devices/?search=olga")
    expect(oscar.get_by_text("olga-secret-board")).to_have_count(0)


def test_device_list_screenshot_for_the_readme(page, live_server):
    log_in(page, live_server, "alice")
    for name, kind, place in (
        ("greenhouse-pi", "raspberry_pi", "Greenhouse"),
        ("shed-esp32", "esp32", "Garden shed"),
        ("weather-arduino", "arduino", "Roof"),
    ):
        page.goto(f"{live_server}/admin/devices/new/")
        page.get_by_label("Name").fill(name)
        page.get_by_label("Kind").fill(kind)
        page.get_by_label("Location").fill(place)
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_test_id("new-token")).to_be_visible()
    page.goto(f"{live_server}/admin/devices/")
    expect(page.get_by_role("row").filter(has_text="weather-arduino")).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "devices.png"), full_page=True)
    assert (SCREENSHOTS / "devices.png").stat().st_size > 10_000
