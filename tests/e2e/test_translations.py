"""A German browser gets a German portal: the login page, the dashboard, Flask-Admin's own
buttons and the portal's labels, without the user choosing anything."""

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import PASSWORD


@pytest.fixture
def german_page(browser):
    context = browser.new_context(locale="de-DE", viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def test_the_admin_shows_german_to_a_german_browser(german_page, live_server):
    page = german_page
    page.goto(f"{live_server}/login")
    expect(page.locator("html")).to_have_attribute("lang", "de")
    page.get_by_label("Benutzername").fill("oscar")
    page.get_by_label("Passwort").fill(PASSWORD)
    page.get_by_role("button", name="Anmelden").click()

    expect(page).to_have_url(f"{live_server}/admin/")
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.get_by_role("heading", name="Befehle der letzten 24 Std.")).to_be_visible()
    expect(page.get_by_text("Nie gesehen")).to_be_visible()

    page.get_by_role("link", name="Geräte", exact=True).click()
    expect(page.get_by_role("link", name="Liste")).to_be_visible()
    page.get_by_role("link", name="Erstellen", exact=True).click()
    page.get_by_label("Name").fill("gewaechshaus-esp32")
    page.get_by_label("Standort").fill("Gewächshaus")
    page.get_by_role("button", name="Speichern", exact=True).click()

    expect(page.get_by_text("kopieren Sie es jetzt, es wird nur einmal angezeigt")).to_be_visible()
    expect(page.get_by_role("button", name="Token erneuern")).to_be_visible()
    expect(page.get_by_test_id("device-status")).to_have_text("nie")

    page.get_by_role("button", name="Abmelden").click()
    expect(page.get_by_role("button", name="Anmelden")).to_be_visible()
