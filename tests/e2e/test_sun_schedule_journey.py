"""A sun schedule made in the admin form: its event, place and offset show only once the sun
kind is chosen."""

from playwright.sync_api import expect
from sqlalchemy import select

from portal.extensions import db
from portal.models import Schedule
from portal.services.devices import create_device
from portal.services.users import find_user
from tests.e2e.conftest import log_in


def test_operator_makes_a_sun_schedule_in_the_form(page, live_app, live_server):
    with live_app.app_context():
        create_device(None, "greenhouse-lights", owner=find_user("oscar"))
        db.session.commit()
    log_in(page, live_server, "oscar")
    page.goto(f"{live_server}/admin/schedules/new/")
    latitude = page.get_by_label("Latitude")
    expect(latitude).to_be_hidden()
    page.get_by_label("Kind").select_option("sun")
    expect(latitude).to_be_visible()
    page.get_by_label("Sun event").select_option("sunset")
    page.get_by_label("Name").fill("Lights on at sunset")
    # Flask-Admin wraps the select in Select2; the select itself still takes the choice.
    page.locator("#device").select_option(label="greenhouse-lights", force=True)
    page.get_by_label("Action").fill("relay.on")
    page.get_by_label("Minutes after the event").fill("-30")
    latitude.fill("52.52")
    page.get_by_label("Longitude").fill("13.4")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Record was successfully created.")).to_be_visible()
    with live_app.app_context():
        schedule = db.session.scalars(select(Schedule)).one()
        schedule_id = schedule.id
        assert (schedule.kind.value, schedule.sun_offset_minutes) == ("sun", -30)
    page.goto(f"{live_server}/admin/schedules/details/?id={schedule_id}")
    expect(page.get_by_text("Every day at sunset \u2212 30 min, 52.52° N 13.40° E")).to_be_visible()
    expect(page.get_by_test_id("upcoming").get_by_role("row")).to_have_count(5)
