"""Two-factor login in a real browser: enrol on the account page by the QR code's key, keep the
recovery codes, log out, log in with password and code; a copied cookie dies with the logout."""

import time
from pathlib import Path

import pyotp
from playwright.sync_api import expect

from tests.e2e.conftest import log_in

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def next_step_code(totp: pyotp.TOTP) -> str:
    """The code of the next 30-second step: the one shown now was spent on enrolment, and a
    code is accepted once only."""
    return totp.at(time.time() + 30)


def test_an_operator_turns_on_two_factor_login_and_logs_in_with_a_code(page, live_server):
    refused = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)
    log_in(page, live_server, "oscar")
    page.get_by_test_id("current-user").click()
    expect(page.get_by_role("heading", name="Two-factor login")).to_be_visible()
    page.get_by_role("link", name="Turn on").click()

    expect(page.locator("svg").first).to_be_visible()  # the QR code, inline
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "second-factor-enrol.png"))
    secret = page.locator("#totp-secret").inner_text().strip()
    totp = pyotp.TOTP(secret)
    page.get_by_role("textbox", name="Code").fill(totp.now())
    page.get_by_role("button", name="Confirm").click()

    codes = page.locator("#recovery-codes code")
    expect(codes).to_have_count(10)
    page.screenshot(path=str(SCREENSHOTS / "second-factor-codes.png"))
    page.get_by_role("link", name="Done").click()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{live_server}/login")

    log_in(page, live_server, "oscar")
    expect(page).to_have_url(f"{live_server}/login/second-factor")
    page.goto(f"{live_server}/admin/devices/")
    expect(page).to_have_url(f"{live_server}/login?next=/admin/devices/")  # nothing opened yet
    page.goto(f"{live_server}/login/second-factor")
    page.get_by_label("Code").fill(next_step_code(totp))
    page.get_by_role("button", name="Log in").click()

    expect(page).to_have_url(f"{live_server}/admin/")
    expect(page.get_by_test_id("current-user")).to_contain_text("oscar")
    assert refused == []


def test_a_cookie_copied_before_logout_opens_nothing_in_another_browser(browser, live_server):
    first = browser.new_context()
    page = first.new_page()
    log_in(page, live_server, "vera")
    expect(page).to_have_url(f"{live_server}/admin/")
    cookies = first.cookies()

    thief = browser.new_context()
    thief.add_cookies(cookies)
    stolen = thief.new_page()
    stolen.goto(f"{live_server}/admin/")
    expect(stolen).to_have_url(f"{live_server}/admin/")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{live_server}/login")
    stolen.goto(f"{live_server}/admin/devices/")
    expect(stolen).to_have_url(f"{live_server}/login?next=/admin/devices/")
    first.close()
    thief.close()
