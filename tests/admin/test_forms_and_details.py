"""Forms that keep what people typed and name fields by label; finished detail pages."""

import html as html_lib
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select

from portal.extensions import db as _db
from portal.models import (
    Alert,
    Command,
    CommandSource,
    CommandStatus,
    Schedule,
    ScheduleKind,
    utcnow,
)
from portal.services import rules
from tests import factories
from tests.conftest import csrf_token

BASE = {
    "name": "Morning lights",
    "action": "relay.on",
    "payload": "{}",
    "timezone": "Europe/Berlin",
    "enabled": "y",
    "misfire_grace_seconds": "300",
    "command_ttl_seconds": "3600",
}
PREVIEW = "/admin/schedules/preview/"


def post_form(client, path, data):
    return client.post(
        path, data={**data, "csrf_token": csrf_token(client, path)}, follow_redirects=True
    )


def field_html(html: str, field_id: str) -> str:
    """The markup from the field's opening tag to the next form group."""
    start = html.index(f'id="{field_id}"')
    return html[html.rindex("<", 0, start) : html.find('class="form-group', start)]


# ---- no device chosen for the user ----------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/schedules/new/", "/admin/commands/new/"])
def test_no_device_is_preselected(client, login_as, operator, device, path):
    login_as(operator)
    html = client.get(path).get_data(as_text=True)
    select_html = field_html(html, "device")
    assert '<option selected value="__None">— choose a device —</option>' in select_html
    assert select_html.count("selected") == 1


def test_a_schedule_without_a_chosen_device_is_refused_beside_the_field(
    client, db, login_as, operator, device
):
    login_as(operator)
    response = post_form(
        client, "/admin/schedules/new/", {**BASE, "device": "__None", "cron": "0 7 * * *"}
    )
    assert "This field is required." in field_html(response.get_data(as_text=True), "device")
    assert db.session.scalar(select(Schedule).limit(1)) is None


# ---- the send-command form on the device page -----------------------------------------------


def test_a_refused_command_keeps_what_was_typed_and_shows_the_error_once(
    client, db, login_as, operator, device
):
    login_as(operator)
    path = f"/admin/devices/details/?id={device.id}"
    response = client.post(
        f"/admin/devices/send-command/?id={device.id}",
        data={
            "action": "relay.pulse",
            "payload": "{oops",
            "expires_in": "120",
            "csrf_token": csrf_token(client, path),
        },
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'value="relay.pulse"' in html and "{oops</textarea>" in html and 'value="120"' in html
    assert html.count("Not valid JSON") == 1
    payload = field_html(html, "payload")
    assert "is-invalid" in payload and "Not valid JSON" in payload
    assert db.session.scalar(select(Command).limit(1)) is None


def test_a_command_refused_by_the_service_lands_beside_its_field(
    client, db, login_as, operator, device
):
    login_as(operator)
    path = f"/admin/devices/details/?id={device.id}"
    response = client.post(
        f"/admin/devices/send-command/?id={device.id}",
        data={
            "action": "no spaces allowed!",
            "payload": "{}",
            "expires_in": "60",
            "csrf_token": csrf_token(client, path),
        },
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'value="no spaces allowed!"' in html
    assert 'id="action-error"' in html
    assert db.session.scalar(select(Command).limit(1)) is None


# ---- the schedule form ----------------------------------------------------------------------


def test_schedule_form_offers_kinds_and_a_searchable_zone_list(client, login_as, operator):
    login_as(operator)
    html = client.get("/admin/schedules/new/").get_data(as_text=True)
    assert 'list="timezone-zones"' in html
    assert '<datalist id="timezone-zones">' in html and '<option value="Europe/Berlin">' in html
    assert 'data-fields-of="' in field_html(html, "kind")
    assert 'id="schedule-preview"' in html and "/admin/schedules/preview/" in html


@pytest.mark.parametrize(
    "fields,field,message",
    [
        ({"kind": "cron"}, "cron", "Needed for this kind of schedule."),
        ({"kind": "once", "cron": "0 7 * * *"}, "run_at", "Needed for this kind of schedule."),
        (
            {
                "kind": "cron",
                "cron": "0 7 * * *",
                "start_at": "2030-01-02T00:00",
                "end_at": "2030-01-01T00:00",
            },
            "end_at",
            "“End at” must be after “Start at”.",
        ),
        ({}, "cron", "Fill exactly one of: Cron, Interval (seconds), Run once at, Sun event."),
    ],
)
def test_schedule_errors_stand_beside_their_fields_with_labels(
    client, db, login_as, operator, device, fields, field, message
):
    login_as(operator)
    response = post_form(client, "/admin/schedules/new/", {**BASE, "device": device.id, **fields})
    assert message in field_html(response.get_data(as_text=True), field)
    assert db.session.scalar(select(Schedule).limit(1)) is None


def test_only_the_chosen_kinds_field_is_saved(client, db, login_as, operator, device):
    login_as(operator)
    form = {**BASE, "device": device.id, "kind": "interval", "cron": "0 7 * * *"}
    post_form(client, "/admin/schedules/new/", {**form, "interval_seconds": "600"})
    schedule = db.session.execute(select(Schedule)).scalar_one()
    assert (schedule.kind, schedule.interval_seconds, schedule.cron) == (
        ScheduleKind.interval,
        600,
        None,
    )


# ---- the live preview -----------------------------------------------------------------------


def test_preview_gives_the_next_five_runs_in_utc_and_the_zone(client, login_as, viewer):
    login_as(viewer)
    answer = client.get(
        PREVIEW, query_string={"kind": "cron", "cron": "0 7 * * *", "timezone": "Europe/Berlin"}
    ).get_json()
    assert answer["errors"] == {}
    assert len(answer["times"]) == 5
    first = answer["times"][0]
    assert first["local_text"].endswith("07:00 Europe/Berlin")
    assert first["utc_text"][11:] in ("06:00 UTC", "05:00 UTC")


@pytest.mark.parametrize(
    "query,field",
    [
        ({"kind": "cron", "cron": "61 * * * *"}, "cron"),
        ({"kind": "cron", "cron": "0 0 30 2 *"}, "cron"),
        ({"kind": "interval", "interval_seconds": "0"}, "interval_seconds"),
        ({"kind": "interval", "interval_seconds": "abc"}, "interval_seconds"),
        ({"kind": "once", "run_at": "2001-01-01T00:00"}, "run_at"),
        ({"kind": "cron", "cron": "0 7 * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"kind": "sun", "sun_event": "sunset", "sun_latitude": "95"}, "sun_latitude"),
        ({"kind": "sun"}, "sun_event"),
    ],
)
def test_preview_names_the_bad_field(client, login_as, operator, query, field):
    login_as(operator)
    response = client.get(PREVIEW, query_string=query)
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["times"] == [] and field in answer["errors"]


@pytest.mark.parametrize(
    "query",
    [
        {"kind": "nope"},
        {"kind": "cron", "cron": "\x00" * 3},
        {"kind": "interval", "interval_seconds": "9" * 400},
        {"kind": "sun", "sun_event": "sunrise", "sun_latitude": "nan", "sun_longitude": "inf"},
        {"kind": "once", "run_at": "9999-12-31T23:59", "timezone": "Pacific/Kiritimati"},
        {"kind": "cron", "cron": "* * * * *", "timezone": "\x00/../etc"},
        {"id": "x" * 200},
        {"id": "99999999999999999999"},
    ],
)
def test_preview_never_fails_on_junk(client, login_as, operator, query):
    login_as(operator)
    response = client.get(PREVIEW, query_string=query)
    assert response.status_code in (200, 404)


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "interval", "interval_seconds": "9" * 400},
        {"kind": "cron", "cron": "0 7 * * *", "misfire_grace_seconds": "9" * 400},
        {"kind": "cron", "cron": "0 7 * * *", "command_ttl_seconds": "-" + "9" * 400},
    ],
)
def test_schedule_form_refuses_huge_numbers_beside_the_field(
    client, db, login_as, operator, device, fields
):
    login_as(operator)
    response = post_form(client, "/admin/schedules/new/", {**BASE, "device": device.id, **fields})
    assert response.status_code == 200
    name = next(n for n in fields if n.endswith("seconds"))
    assert "is-invalid" in field_html(response.get_data(as_text=True), name)


def test_a_huge_expiry_is_refused_beside_its_field(client, db, login_as, operator, device):
    login_as(operator)
    path = f"/admin/devices/details/?id={device.id}"
    response = client.post(
        f"/admin/devices/send-command/?id={device.id}",
        data={
            "action": "relay.on",
            "expires_in": "9" * 400,
            "csrf_token": csrf_token(client, path),
        },
    )
    assert response.status_code == 200
    assert 'id="expires_in-error"' in response.get_data(as_text=True)


def test_preview_of_an_out_of_reach_schedule_is_not_found(client, login_as, operator, other_device):
    schedule = factories.ScheduleFactory(device=other_device)
    login_as(operator)
    response = client.get(PREVIEW, query_string={"id": schedule.id, "kind": "interval"})
    assert response.status_code == 404


def test_preview_asks_anonymous_users_to_log_in(client):
    response = client.get(PREVIEW, query_string={"kind": "cron", "cron": "* * * * *"})
    assert response.status_code == 302 and "/login" in response.headers["Location"]


# ---- detail pages ---------------------------------------------------------------------------


@pytest.fixture
def berlin_operator(operator, db):
    operator.timezone = "Europe/Berlin"
    _db.session.commit()
    return operator


def test_a_fired_one_off_is_done_with_only_its_fields(
    client, db, login_as, berlin_operator, device
):
    fired = utcnow() - timedelta(hours=1)
    schedule = factories.ScheduleFactory(
        device=device,
        kind=ScheduleKind.once,
        interval_seconds=None,
        run_at=fired,
        next_fire_at=None,
        fire_count=1,
        last_fire_at=fired,
        payload={"seconds": 30},
    )
    command = factories.CommandFactory(
        device=device, schedule=schedule, source=CommandSource.schedule, due_at=fired
    )
    login_as(berlin_operator)
    response = client.get(f"/admin/schedules/details/?id={schedule.id}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "done (fired)" in html and 'data-testid="upcoming"' not in html
    assert "Interval (s)" not in html and '<th scope="row" class="w-25">Cron</th>' not in html
    assert f'href="/admin/devices/details/?id={device.id}"' in html
    assert f'href="/admin/commands/details/?id={command.id}"' in html
    assert "CET" in html or "CEST" in html
    assert "&#34;seconds&#34;: 30" in html or '"seconds": 30' in html


def test_an_enabled_cron_schedule_shows_its_next_runs_in_the_viewers_zone(
    client, db, login_as, berlin_operator, device
):
    schedule = factories.ScheduleFactory(
        device=device, kind=ScheduleKind.cron, interval_seconds=None, cron="0 7 * * *"
    )
    login_as(berlin_operator)
    html = client.get(f"/admin/schedules/details/?id={schedule.id}").get_data(as_text=True)
    upcoming = html[html.index('data-testid="upcoming"') :].split("</table>")[0]
    assert upcoming.count("<tr>") == 5 and "CET" in upcoming
    assert ">enabled<" in html
    assert "Run once at" not in html


def test_command_details_link_device_schedule_and_show_pretty_json(
    client, db, login_as, berlin_operator, device
):
    schedule = factories.ScheduleFactory(device=device)
    command = factories.CommandFactory(
        device=device,
        schedule=schedule,
        source=CommandSource.schedule,
        status=CommandStatus.succeeded,
        payload={"seconds": 3},
        result={"ok": True},
    )
    login_as(berlin_operator)
    html = client.get(f"/admin/commands/details/?id={command.id}").get_data(as_text=True)
    assert f'href="/admin/devices/details/?id={device.id}"' in html
    assert f'href="/admin/schedules/details/?id={schedule.id}"' in html
    assert "<pre" in html and "&#34;ok&#34;: true" in html.replace('"', "&#34;")
    assert "succeeded" in html and ("CET" in html or "CEST" in html)


def test_command_details_link_the_rule_and_alert_that_sent_it(
    client, db, login_as, operator, device
):
    rule = rules.create_rule(
        operator,
        name="too hot",
        device_id=device.id,
        kind="threshold",
        metric="temperature",
        op=">",
        value=30,
    )
    command = factories.CommandFactory(device=device, source=CommandSource.rule)
    alert = Alert(
        rule=rule, device=device, severity=rule.severity, value=31, raise_command_id=command.id
    )
    _db.session.add(alert)
    _db.session.commit()
    login_as(operator)
    html = client.get(f"/admin/commands/details/?id={command.id}").get_data(as_text=True)
    assert f'href="/admin/rules/details/?id={rule.id}"' in html
    assert f'href="/admin/alerts/details/?id={alert.id}"' in html


def test_the_schedule_commands_link_lists_only_that_schedules_commands(
    client, db, login_as, operator, device
):
    mine = factories.ScheduleFactory(device=device)
    other = factories.ScheduleFactory(device=device)
    factories.CommandFactory(device=device, schedule=mine, action="mine.action")
    factories.CommandFactory(device=device, schedule=other, action="other.action")
    login_as(operator)
    html = client.get(f"/admin/commands/?flt0_schedule_id_equals={mine.id}").get_data(as_text=True)
    assert "mine.action" in html and "other.action" not in html


# ---- readings: a details page, and device names as links in the lists -------------------------

AT = datetime(2026, 1, 15, 11, 30, 5, tzinfo=UTC)


def field_rows(html: str, testid: str) -> dict[str, str]:
    """A details table's rows as label → cell text (tags dropped)."""
    table = html[html.index(f'data-testid="{testid}"') :].split("</table>")[0]
    rows = re.findall(r'<th scope="row"[^>]*>(.*?)</th><td>(.*?)</td>', table, re.S)
    return {label: re.sub(r"<[^>]+>", "", cell).strip() for label, cell in rows}


def test_a_readings_details_page_shows_it_in_the_viewers_zone_with_its_device_linked(
    client, login_as, berlin_operator, device
):
    reading = factories.ReadingFactory(
        device=device, metric="temperature", value=21.25, recorded_at=AT
    )
    login_as(berlin_operator)
    response = client.get(f"/admin/readings/details/?id={reading.id}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert field_rows(html, "reading-fields") == {
        "ID": str(reading.id),
        "Device": "oscar-board",
        "Metric": "temperature",
        "Value": "21.25",
        "Recorded": "2026-01-15 12:30 CET",
    }
    assert f'<a href="/admin/devices/details/?id={device.id}" data-testid="device-link">' in html
    assert 'title="2026-01-15 11:30:05 UTC"' in html
    assert "<title>temperature=21.25 · Readings · Portal</title>" in html
    assert 'data-testid="history"' not in html  # nobody changes a reading


def test_a_readings_details_page_leads_to_the_same_metric_of_the_same_device(
    client, login_as, operator, device
):
    reading = factories.ReadingFactory(device=device, metric="humidity")
    factories.ReadingFactory(device=device, metric="temperature")
    factories.ReadingFactory(device=factories.DeviceFactory(owner=operator), metric="humidity")
    login_as(operator)
    html = client.get(f"/admin/readings/details/?id={reading.id}").get_data(as_text=True)
    found = re.search(r'<a href="([^"]+)"\s+data-testid="same-metric">', html)
    assert found
    listed = client.get(html_lib.unescape(found.group(1))).get_data(as_text=True)
    ids = re.findall(r'href="/admin/readings/details/\?id=(\d+)&amp;', listed)
    assert ids == [str(reading.id)]


def test_a_reading_out_of_reach_is_not_found(client, login_as, operator, other_device):
    reading = factories.ReadingFactory(device=other_device)
    login_as(operator)
    assert client.get(f"/admin/readings/details/?id={reading.id}").status_code == 404


@pytest.mark.parametrize("view", ["readings", "commands"])
def test_each_row_names_its_device_as_a_link_to_its_page(client, login_as, admin, device, view):
    make = factories.ReadingFactory if view == "readings" else factories.CommandFactory
    make(device=device)
    login_as(admin)
    html = client.get(f"/admin/{view}/").get_data(as_text=True)
    cell = (
        f'<td class="col-device"><a href="/admin/devices/details/?id={device.id}" '
        'data-testid="device-link">oscar-board</a></td>'
    )
    assert cell in html


@pytest.mark.parametrize("view", ["readings", "commands"])
def test_the_device_links_cost_no_query_per_row(app, client, login_as, admin, view):
    """The names come with one query for the page (DeviceNameMixin), however many rows."""
    make = factories.ReadingFactory if view == "readings" else factories.CommandFactory
    login_as(admin)

    def statements_for_a_page() -> int:
        count = 0

        def seen(*args):
            nonlocal count
            count += 1

        event.listen(_db.engine, "before_cursor_execute", seen)
        try:
            assert client.get(f"/admin/{view}/").status_code == 200
        finally:
            event.remove(_db.engine, "before_cursor_execute", seen)
        return count

    for _ in range(2):
        make(device=factories.DeviceFactory())
    few = statements_for_a_page()
    for _ in range(20):
        make(device=factories.DeviceFactory())
    assert statements_for_a_page() == few


@pytest.mark.parametrize("view", ["readings", "commands"])
def test_an_export_names_the_device_without_markup(client, login_as, admin, device, view):
    make = factories.ReadingFactory if view == "readings" else factories.CommandFactory
    make(device=device)
    login_as(admin)
    export = client.get(f"/admin/{view}/export/csv/").get_data(as_text=True)
    assert ",oscar-board," in export and "<a " not in export and "<span" not in export


# ---- error pages -------------------------------------------------------------------------------


@pytest.mark.parametrize("root", ["", "/portal"])
def test_an_error_pages_api_link_is_the_docs_address_under_the_apps_root(
    client, login_as, viewer, root
):
    login_as(viewer)
    response = client.get("/admin/no-such-page", base_url=f"http://localhost{root}")
    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert f'href="{root}/api/v1/docs" title="API documentation"' in html
    assert 'data-testid="error-page"' in html
