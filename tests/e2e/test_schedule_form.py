"""The schedule form shows only the chosen kind's fields and previews the next runs as one types;
screenshots of the form and the finished detail pages go to /tmp/forms for review."""

import os
from pathlib import Path

from playwright.sync_api import expect
from sqlalchemy import select

from portal.extensions import db
from portal.models import Command, Schedule
from portal.services.devices import create_device
from portal.services.schedules import run_schedule_now
from portal.services.users import find_user
from tests.e2e.conftest import log_in

SHOTS = Path(os.environ.get("PORTAL_FORM_SCREENSHOTS", "/tmp/forms"))


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_the_kind_hides_other_fields_and_a_cron_previews_its_runs(page, live_app, live_server):
    with live_app.app_context():
        create_device(None, "relay-board-b", owner=find_user("oscar"))
        create_device(None, "relay-board-a", owner=find_user("oscar"))
        db.session.commit()
    log_in(page, live_server, "oscar")
    page.goto(f"{live_server}/admin/schedules/new/")
    cron = page.get_by_label("Cron", exact=True)
    expect(cron).to_be_visible()
    expect(page.get_by_label("Run once at")).to_be_hidden()
    page.get_by_label("Kind").select_option("once")
    expect(cron).to_be_hidden()
    expect(page.get_by_label("Run once at")).to_be_visible()

    page.get_by_label("Kind").select_option("cron")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    cron.fill("0 7 * * *")
    runs = page.get_by_test_id("schedule-preview").get_by_role("row")
    expect(runs).to_have_count(6)  # a header and five runs
    expect(runs.nth(1)).to_contain_text("07:00 Europe/Berlin")
    cron.fill("61 * * * *")
    expect(page.get_by_test_id("schedule-preview")).to_contain_text("Cron:")
    cron.fill("0 7 * * *")
    expect(runs).to_have_count(6)
    _shot(page, "schedule-form")

    page.get_by_label("Name").fill("Morning relay")
    # Flask-Admin wraps the select in Select2; the select itself still takes the choice.
    page.locator("#device").select_option(label="relay-board-a", force=True)
    page.get_by_label("Action").fill("relay.on")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Record was successfully created.")).to_be_visible()
    with live_app.app_context():
        schedule = db.session.scalars(select(Schedule)).one()
        run_schedule_now(None, schedule)
        db.session.commit()
        schedule_id = schedule.id
        command_id = db.session.scalars(select(Command.id)).one()
    page.goto(f"{live_server}/admin/schedules/details/?id={schedule_id}")
    expect(page.get_by_test_id("schedule-commands").get_by_role("link").first).to_be_visible()
    _shot(page, "schedule-details")
    page.goto(f"{live_server}/admin/commands/details/?id={command_id}")
    expect(page.get_by_test_id("schedule-link")).to_have_text("Morning relay")
    _shot(page, "command-details")


def test_a_refused_command_comes_back_with_its_error_beside_the_field(page, live_app, live_server):
    with live_app.app_context():
        device, _token = create_device(None, "pump-board", owner=find_user("olga"))
        db.session.commit()
        device_id = device.id
    log_in(page, live_server, "olga")
    page.goto(f"{live_server}/admin/devices/details/?id={device_id}")
    form = page.get_by_test_id("send-command")
    form.get_by_label("Action").fill("relay.pulse")
    form.get_by_label("Payload (JSON object)").fill("{oops")
    form.get_by_role("button", name="Send").click()
    expect(form.get_by_label("Action")).to_have_value("relay.pulse")
    expect(form.get_by_label("Payload (JSON object)")).to_have_value("{oops")
    expect(page.get_by_test_id("field-error")).to_have_count(1)
    expect(page.get_by_test_id("field-error")).to_contain_text("Not valid JSON")
    _shot(page, "device-command-refused")
