"""The device chart's long ranges, drawn from roll-ups: a year names each point by its UTC day,
with no clock time, even for a user whose day starts at another hour."""

import re
from datetime import timedelta

from playwright.sync_api import expect

from portal.extensions import db
from portal.models import Role, utcnow
from portal.services.devices import create_device
from portal.services.readings import ReadingInput, record_readings
from portal.services.users import create_user
from tests.e2e.conftest import PASSWORD


def test_the_year_chart_has_a_point_per_utc_day(browser, live_app, live_server):
    # Noon UTC 40 days ago: in Los Angeles that day starts at 16:00 the day before (UTC).
    day = (utcnow() - timedelta(days=40)).replace(hour=12, minute=0, second=0, microsecond=0)
    with live_app.app_context():
        user = create_user(None, "yoko", PASSWORD, Role.operator)
        user.timezone = "America/Los_Angeles"
        device, _token = create_device(user, "year-sensor", owner=user)
        record_readings(
            device,
            [
                ReadingInput("temperature", v, day + timedelta(minutes=m))
                for v, m in ((20, 0), (24, 9))
            ],
        )
        db.session.commit()
        device_id = device.id
    context = browser.new_context(timezone_id="Asia/Tokyo", locale="en-US")
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{live_server}/login")
    page.get_by_label("Username").fill("yoko")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{live_server}/admin/devices/details/?id={device_id}&range=1y")

    expect(page.get_by_role("link", name="1y")).to_have_class(re.compile("active"))
    chart = page.locator('[data-metric="temperature"]')
    chart.locator(".u-over").hover()
    legend = chart.locator(".u-legend .u-series .u-value")
    expect(legend.nth(0)).to_have_text(f"{day:%b} {day.day}, {day.year}")
    expect(legend.nth(1)).to_have_text(re.compile(r"^22\s°C$"))  # the day's mean
    context.close()
