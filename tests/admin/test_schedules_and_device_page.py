"""Schedules in the admin, the device page, the dashboard and history pages."""

import pytest
from sqlalchemy import select

from portal.models import AuditEvent, Command, Schedule
from portal.services.devices import update_device
from tests import factories
from tests.conftest import csrf_token

BASE = {
    "name": "Morning lights",
    "action": "relay.on",
    "payload": '{"seconds": 30}',
    "timezone": "Europe/Berlin",
    "enabled": "y",
    "misfire_grace_seconds": "300",
    "command_ttl_seconds": "3600",
}


def post_form(client, path, data):
    return client.post(
        path, data={**data, "csrf_token": csrf_token(client, path)}, follow_redirects=True
    )


def test_operator_creates_a_cron_schedule(client, db, login_as, operator, device):
    login_as(operator)
    post_form(client, "/admin/schedules/new/", {**BASE, "device": device.id, "cron": "0 7 * * 1-5"})
    schedule = db.session.execute(select(Schedule)).scalar_one()
    assert (schedule.cron, schedule.timezone, schedule.payload) == (
        "0 7 * * 1-5",
        "Europe/Berlin",
        {"seconds": 30},
    )
    assert schedule.next_fire_at is not None
    assert (
        db.session.execute(select(AuditEvent).where(AuditEvent.object_type == "schedule"))
        .scalar_one()
        .via
        == "admin"
    )


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"cron": "0 0 30 2 *"}, "never"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "0 7 * * *", "interval_seconds": "60"}, "exactly one"),
        ({}, "exactly one"),
        ({"cron": "0 7 * * *", "timezone": "Mars/Olympus"}, "Mars/Olympus"),
    ],
)
def test_bad_schedules_are_form_errors(client, db, login_as, operator, device, fields, message):
    login_as(operator)
    response = post_form(client, "/admin/schedules/new/", {**BASE, "device": device.id, **fields})
    assert response.status_code == 200
    assert message.lower() in response.get_data(as_text=True).lower()
    assert db.session.scalar(select(Schedule).limit(1)) is None


def test_schedule_device_choices_are_scoped(client, login_as, operator, device, other_device):
    login_as(operator)
    html = client.get("/admin/schedules/new/").get_data(as_text=True)
    assert device.name in html and other_device.name not in html


def test_operator_cannot_create_a_schedule_for_another_operators_device(
    client, db, login_as, operator, other_device
):
    login_as(operator)
    post_form(
        client, "/admin/schedules/new/", {**BASE, "device": other_device.id, "cron": "0 7 * * *"}
    )
    assert db.session.scalar(select(Schedule).limit(1)) is None


def test_bulk_disable_and_run_now(client, db, login_as, operator, device):
    schedule = factories.ScheduleFactory(device=device)
    login_as(operator)
    token = csrf_token(client, "/admin/schedules/")
    client.post(
        "/admin/schedules/action/",
        data={"action": "disable", "rowid": [schedule.id], "csrf_token": token},
    )
    db.session.expire_all()
    stored = db.session.get(Schedule, schedule.id)
    assert stored.enabled is False and stored.next_fire_at is None
    client.post(
        "/admin/schedules/action/",
        data={"action": "run_now", "rowid": [schedule.id], "csrf_token": token},
    )
    command = db.session.execute(select(Command)).scalar_one()
    assert command.schedule_id == schedule.id and command.source.value == "schedule"


def test_schedule_page_shows_its_history(client, db, login_as, operator, device):
    login_as(operator)
    post_form(client, "/admin/schedules/new/", {**BASE, "device": device.id, "cron": "0 7 * * *"})
    schedule = db.session.execute(select(Schedule)).scalar_one()
    html = client.get(f"/admin/schedules/details/?id={schedule.id}").get_data(as_text=True)
    assert 'data-testid="history"' in html and "0 7 * * *" in html


def test_device_page_shows_status_schedules_commands_and_history(
    client, db, login_as, operator, device
):
    factories.ScheduleFactory(device=device, name="Fan pulse")
    factories.CommandFactory(device=device, action="relay.off")
    update_device(operator, device, location="Attic")
    db.session.commit()
    login_as(operator)
    html = client.get(f"/admin/devices/details/?id={device.id}").get_data(as_text=True)
    assert 'data-testid="device-status">never' in html
    assert "Fan pulse" in html and "relay.off" in html
    assert "Attic" in html and 'data-testid="history"' in html


def test_device_page_has_chart_data_for_its_readings(client, db, login_as, operator, device):
    factories.ReadingFactory(device=device, metric="temperature", value=21.5)
    login_as(operator)
    html = client.get(f"/admin/devices/details/?id={device.id}&range=1h").get_data(as_text=True)
    assert 'id="device-chart"' in html and '"temperature"' in html


def test_send_command_from_the_device_page(client, db, login_as, operator, device):
    login_as(operator)
    path = f"/admin/devices/details/?id={device.id}"
    response = client.post(
        f"/admin/devices/send-command/?id={device.id}",
        data={
            "action": "relay.on",
            "payload": '{"seconds": 3}',
            "expires_in": "120",
            "csrf_token": csrf_token(client, path),
        },
        follow_redirects=True,
    )
    assert "queued for oscar-board" in response.get_data(as_text=True)
    command = db.session.execute(select(Command)).scalar_one()
    assert command.payload == {"seconds": 3} and command.created_by_id == operator.id


def test_send_command_with_bad_json_sends_nothing(client, db, login_as, operator, device):
    login_as(operator)
    path = f"/admin/devices/details/?id={device.id}"
    response = client.post(
        f"/admin/devices/send-command/?id={device.id}",
        data={
            "action": "relay.on",
            "payload": "{oops",
            "expires_in": "120",
            "csrf_token": csrf_token(client, path),
        },
        follow_redirects=True,
    )
    assert "Command not sent" in response.get_data(as_text=True)
    assert db.session.scalar(select(Command).limit(1)) is None


def test_viewer_cannot_send_a_command_from_the_device_page(client, db, login_as, viewer, device):
    login_as(viewer)
    path = f"/admin/devices/details/?id={device.id}"
    html = client.get(path).get_data(as_text=True)
    assert "Send a command" not in html
    response = client.post(
        f"/admin/devices/send-command/?id={device.id}",
        data={
            "action": "relay.on",
            "payload": "{}",
            "expires_in": "60",
            "csrf_token": csrf_token(client, path),
        },
    )
    assert response.status_code == 403
    assert db.session.scalar(select(Command).limit(1)) is None


def test_operator_dashboard_counts_only_their_devices(
    client, login_as, operator, device, other_device
):
    login_as(operator)
    html = client.get("/admin/").get_data(as_text=True)
    assert 'data-testid="devices-total">1<' in html
    assert 'data-testid="scheduler-warning"' in html


def test_a_user_sets_their_time_zone_and_sees_times_in_it(client, db, login_as, viewer, device):
    from portal.models import User

    login_as(viewer)
    response = post_form(client, "/admin/account/", {"timezone": "America/New_York"})
    assert "Settings saved." in response.get_data(as_text=True)
    assert db.session.get(User, viewer.id).timezone == "America/New_York"
    html = client.get("/admin/devices/").get_data(as_text=True)
    assert " EST</time>" in html or " EDT</time>" in html


def test_changing_ones_password_needs_the_current_one(client, db, login_as, viewer):
    from portal.services.users import authenticate

    login_as(viewer)
    response = post_form(
        client,
        "/admin/account/",
        {"timezone": "UTC", "current_password": "wrong", "new_password": "brand-new-password"},
    )
    assert "This is not your password." in response.get_data(as_text=True)
    post_form(
        client,
        "/admin/account/",
        {
            "timezone": "UTC",
            "current_password": factories.PASSWORD,
            "new_password": "brand-new-password",
        },
    )
    assert authenticate("vera", "brand-new-password") is not None


def test_schedule_page_shows_words_and_next_five_runs_in_utc_and_local(
    client, db, login_as, operator, device
):
    login_as(operator)
    post_form(client, "/admin/schedules/new/", {**BASE, "device": device.id, "cron": "0 7 * * *"})
    schedule = db.session.execute(select(Schedule)).scalar_one()
    html = client.get(f"/admin/schedules/details/?id={schedule.id}").get_data(as_text=True)
    upcoming = html.split('data-testid="upcoming">')[1].split("</table>")[0]
    assert upcoming.count("<tr>") == 5
    assert "07:00 Europe/Berlin" in upcoming and (
        "06:00 UTC" in upcoming or "05:00 UTC" in upcoming
    )
    assert "At 07:00" in html
    export = client.get("/admin/schedules/export/csv/").get_data(as_text=True)
    assert "At 07:00" in export


def test_bulk_send_a_command_to_selected_devices(
    client, db, login_as, operator, device, other_device
):
    second = factories.DeviceFactory(owner=operator, name="oscar-second")
    login_as(operator)
    token = csrf_token(client, "/admin/devices/")
    response = client.post(
        "/admin/devices/action/",
        data={
            "action": "send_command",
            "rowid": [device.id, second.id, other_device.id],
            "csrf_token": token,
        },
    )
    assert response.status_code == 302
    form_page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "oscar-second" in form_page and "olga-board" not in form_page
    client.post(
        response.headers["Location"],
        data={
            "ids": f"{device.id},{second.id},{other_device.id}",
            "action": "relay.off",
            "payload": '{"all": true}',
            "expires_in": "300",
            "csrf_token": token,
        },
    )
    commands = db.session.execute(select(Command)).scalars().all()
    assert sorted(c.device_id for c in commands) == sorted([device.id, second.id])
    assert {c.action for c in commands} == {"relay.off"}


def test_bulk_send_with_a_bad_action_sends_nothing(client, db, login_as, operator, device):
    login_as(operator)
    token = csrf_token(client, "/admin/devices/")
    response = client.post(
        f"/admin/devices/bulk-command/?ids={device.id}",
        data={
            "ids": str(device.id),
            "action": "no spaces allowed",
            "payload": "{}",
            "expires_in": "300",
            "csrf_token": token,
        },
    )
    assert response.status_code == 200
    assert db.session.scalar(select(Command).limit(1)) is None


# ---- sun schedules --------------------------------------------------------------------------

SUN_FORM = {
    "sun_event": "sunset",
    "sun_offset_minutes": "-30",
    "sun_latitude": "52.52",
    "sun_longitude": "13.4",
}


def test_operator_creates_a_sun_schedule(client, db, login_as, operator, device):
    login_as(operator)
    post_form(client, "/admin/schedules/new/", {**BASE, "device": device.id, **SUN_FORM})
    schedule = db.session.execute(select(Schedule)).scalar_one()
    assert (
        schedule.kind.value,
        schedule.sun_event,
        schedule.sun_offset_minutes,
        schedule.sun_latitude,
        schedule.sun_longitude,
        schedule.cron,
    ) == ("sun", "sunset", -30, 52.52, 13.4, None)
    html = client.get(f"/admin/schedules/details/?id={schedule.id}").get_data(as_text=True)
    assert "Every day at sunset \u2212 30 min, 52.52° N 13.40° E" in html
    upcoming = html.split('data-testid="upcoming">')[1].split("</table>")[0]
    assert upcoming.count("<tr>") == 5


def test_a_bad_sun_place_is_an_error_on_its_field(client, db, login_as, operator, device):
    login_as(operator)
    response = post_form(
        client,
        "/admin/schedules/new/",
        {**BASE, "device": device.id, **SUN_FORM, "sun_latitude": "95"},
    )
    html = response.get_data(as_text=True)
    latitude = html.split('id="sun_latitude"')[0].rsplit("<input", 1)[1]
    assert "is-invalid" in latitude
    assert "Degrees from -90 to 90" in html
    assert db.session.execute(select(Schedule)).first() is None


def test_sun_fields_without_an_event_make_no_sun_schedule(client, db, login_as, operator, device):
    login_as(operator)
    form = {**BASE, "device": device.id, **SUN_FORM, "sun_event": ""}
    response = post_form(client, "/admin/schedules/new/", form)
    assert "exactly one" in response.get_data(as_text=True).lower()
    assert db.session.execute(select(Schedule)).first() is None


def test_the_sun_kind_shows_its_fields_and_the_edit_form_is_filled(
    client, db, login_as, operator, device
):
    login_as(operator)
    post_form(client, "/admin/schedules/new/", {**BASE, "device": device.id, **SUN_FORM})
    schedule = db.session.execute(select(Schedule)).scalar_one()
    html = client.get(f"/admin/schedules/edit/?id={schedule.id}").get_data(as_text=True)
    fields_of = '"sun": ["sun_event", "sun_offset_minutes", "sun_latitude", "sun_longitude"]'
    assert fields_of in html.replace("&#34;", '"')
    assert '<option selected value="sun">' in html
    assert '<option selected value="sunset">' in html
    assert 'value="52.52"' in html and 'value="-30"' in html
