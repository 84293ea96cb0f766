"""The device chart writes times as the page does (the user's zone, 24-hour clock), whatever the
browser's zone, and values with at most two decimals and the metric's unit."""

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from playwright.sync_api import expect

from portal.extensions import db
from portal.models import Reading, Role, utcnow
from portal.services.devices import create_device
from portal.services.users import create_user
from tests.e2e.conftest import PASSWORD

BUCKET_SECONDS = 24 * 3600 // 120  # the 24 h chart's slices (services/charts.py)


def _device_with_a_reading(live_app) -> tuple[int, datetime]:
    """A Tokyo user's device with one temperature reading in the afternoon (in Tokyo), so a
    12-hour clock would show it differently; returns the device id and its slice's start."""
    at = utcnow() - timedelta(minutes=10)
    while at.astimezone(ZoneInfo("Asia/Tokyo")).hour < 13:
        at -= timedelta(hours=1)
    with live_app.app_context():
        user = create_user(None, "tomo", PASSWORD, Role.operator)
        user.timezone = "Asia/Tokyo"
        device, _token = create_device(user, "tokyo-sensor", owner=user)
        db.session.flush()
        db.session.add(
            Reading(device_id=device.id, metric="temperature", value=21.123456789, recorded_at=at)
        )
        db.session.commit()
        device_id = device.id
    start = datetime.fromtimestamp(int(at.timestamp()) // BUCKET_SECONDS * BUCKET_SECONDS, UTC)
    return device_id, start


def test_chart_shows_24_hour_times_in_the_users_zone_and_rounded_values_with_a_unit(
    browser, live_app, live_server
):
    device_id, start = _device_with_a_reading(live_app)
    context = browser.new_context(timezone_id="America/New_York", locale="en-US")
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{live_server}/login")
    page.get_by_label("Username").fill("tomo")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{live_server}/admin/devices/details/?id={device_id}&range=24h")

    chart = page.locator('[data-metric="temperature"]')
    chart.locator(".u-over").hover()
    legend = chart.locator(".u-legend .u-series .u-value")
    expected = start.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%H:%M")
    expect(legend.nth(0)).to_contain_text(expected)
    expect(legend.nth(0)).not_to_contain_text(re.compile("AM|PM"))
    for i in (1, 2, 3):  # avg, min, max
        expect(legend.nth(i)).to_have_text(re.compile(r"^21\.12\s°C$"))
    expect(chart.locator(".u-title")).to_have_text("temperature (°C)")
    context.close()
