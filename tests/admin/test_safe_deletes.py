"""Safe deletes in the admin: a page that says what goes with an object before it goes (as
Django's admin does), for one row and for the list's bulk "Delete"; an audit entry for each
removed object; the usual 403/404 and CSRF."""

from __future__ import annotations

import html as html_lib
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import flask_admin
import jinja2
import pytest
from sqlalchemy import func, select

from portal.extensions import db as _db
from portal.models import (
    Alert,
    AuditEvent,
    Command,
    Device,
    NotificationChannel,
    NotificationDelivery,
    PersonalToken,
    Reading,
    Role,
    Rule,
    Schedule,
    User,
    utcnow,
)
from portal.services import alerts, deletes, rules
from tests import factories
from tests.conftest import csrf_token


def count(model) -> int:
    return _db.session.scalar(select(func.count()).select_from(model))


def make_rule(owner, device, name):
    rule = rules.create_rule(
        owner, name=name, kind="threshold", device_id=device.id, metric="t", op=">", value=30
    )
    alerts.raise_alert(rule, device.id, 31.0, utcnow())
    _db.session.commit()
    return rule


@pytest.fixture
def busy_device(device, operator):
    """The operator's device with two schedules, a rule with an open alert, three commands and
    two readings."""
    factories.ScheduleFactory(device=device, name="Morning watering")
    factories.ScheduleFactory(device=device, name="Evening lights")
    make_rule(operator, device, "greenhouse too hot")
    for _ in range(3):
        factories.CommandFactory(device=device)
    for _ in range(2):
        factories.ReadingFactory(device=device)
    return device


def page_text(response) -> str:
    """The page's text without tags and with single spaces, as a reader sees it."""
    html = response.get_data(as_text=True)
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def post_delete(client, view: str, *ids, token: str | None = None, **extra):
    data = {"id": [str(i) for i in ids], **extra}
    if token is not None:
        data["csrf_token"] = token
    return client.post(f"/admin/{view}/delete/", data=data)


# ---- the page ---------------------------------------------------------------------------------


def test_the_page_lists_schedules_and_rules_by_name_and_counts_the_rest(
    client, login_as, operator, busy_device
):
    login_as(operator)
    response = client.get(f"/admin/devices/delete/?id={busy_device.id}")
    assert response.status_code == 200
    text = page_text(response)
    assert "Delete “oscar-board”?" in text
    assert "Schedules: 2 Evening lights Morning watering" in text
    assert "Rules: 1 greenhouse too hot" in text
    assert "Commands: 3" in text and "Readings: 2" in text and "Alerts: 1" in text
    assert "Yes, delete" in text and "No, take me back" in text


def test_the_page_deletes_nothing(client, db, login_as, operator, busy_device):
    login_as(operator)
    before = [count(m) for m in (Device, Schedule, Rule, Alert, Command, Reading, AuditEvent)]
    assert client.get(f"/admin/devices/delete/?id={busy_device.id}").status_code == 200
    after = [count(m) for m in (Device, Schedule, Rule, Alert, Command, Reading, AuditEvent)]
    assert after == before


def test_the_yes_form_posts_the_id_with_the_csrf_token(client, login_as, operator, busy_device):
    login_as(operator)
    html = client.get(f"/admin/devices/delete/?id={busy_device.id}&url=/admin/devices/").get_data(
        as_text=True
    )
    form = re.search(
        r'<form method="post" action="/admin/devices/delete/">(.*?)</form>', html, re.S
    )
    assert form, "no delete form"
    assert f'name="id" value="{busy_device.id}"' in form.group(1)
    assert 'name="csrf_token"' in form.group(1)
    assert 'href="/admin/devices/"' in form.group(1)  # "No, take me back"


def test_a_schedule_takes_nothing_with_it(client, db, login_as, operator, device):
    schedule = factories.ScheduleFactory(device=device, name="Nightly")
    factories.CommandFactory(device=device, schedule=schedule)
    login_as(operator)
    text = page_text(client.get(f"/admin/schedules/delete/?id={schedule.id}"))
    assert "Nothing else is deleted with it." in text
    token = csrf_token(client, "/admin/schedules/")
    post_delete(client, "schedules", schedule.id, token=token)
    assert (count(Schedule), count(Command)) == (0, 1)


def test_a_count_stops_at_the_cap_and_says_so(client, login_as, operator, device, monkeypatch):
    monkeypatch.setattr(deletes, "COUNT_CAP", 2)
    for _ in range(3):
        factories.ReadingFactory(device=device)
    login_as(operator)
    text = page_text(client.get(f"/admin/devices/delete/?id={device.id}"))
    assert "Readings: 2+" in text
    assert "“2+” means at least 2" in text


@pytest.mark.parametrize(
    "view, make, listed",
    [
        (
            "rules",
            lambda op, dev: make_rule(op, dev, "too hot"),
            ["Delete “too hot”?", "Alerts: 1"],
        ),
        (
            "channels",
            lambda op, dev: (
                factories.NotificationDeliveryFactory(
                    channel=factories.NotificationChannelFactory(owner=op, name="ops hook")
                ).channel
            ),
            ["Delete “ops hook”?", "Deliveries: 1"],
        ),
    ],
)
def test_each_view_lists_what_goes_with_its_object(
    client, login_as, operator, device, view, make, listed
):
    obj = make(operator, device)
    login_as(operator)
    text = page_text(client.get(f"/admin/{view}/delete/?id={obj.id}"))
    assert all(words in text for words in listed), text


def test_a_users_page_names_their_rules_and_channels_and_counts_their_tokens(
    client, login_as, admin
):
    spare = factories.UserFactory(username="spare", role=Role.operator)
    factories.NotificationChannelFactory(owner=spare, name="spare hook")
    rules.create_rule(spare, name="spare silence", kind="command_failed")
    factories.PersonalTokenFactory(user=spare)
    _db.session.commit()
    login_as(admin)
    text = page_text(client.get(f"/admin/users/delete/?id={spare.id}"))
    assert "Rules: 1 spare silence" in text
    assert "Channels: 1 spare hook" in text
    assert "Tokens: 1" in text


def test_a_user_who_owns_devices_gets_the_reason_and_no_yes(client, login_as, admin, device):
    login_as(admin)
    response = client.get(f"/admin/users/delete/?id={device.owner_id}")
    text = page_text(response)
    assert response.status_code == 200
    assert "oscar owns 1 device(s)" in text
    assert "Yes, delete" not in text and "No, take me back" in text


# ---- deleting ---------------------------------------------------------------------------------


def test_yes_deletes_the_device_and_everything_with_it(client, db, login_as, operator, busy_device):
    login_as(operator)
    token = csrf_token(client, "/admin/devices/")
    response = post_delete(client, "devices", busy_device.id, token=token, url="/admin/devices/")
    assert response.status_code == 302 and response.location.endswith("/admin/devices/")
    assert [count(m) for m in (Device, Schedule, Rule, Alert, Command, Reading)] == [0] * 6
    assert "Record was successfully deleted." in page_text(client.get("/admin/devices/"))


def test_each_removed_object_gets_an_audit_entry(client, db, login_as, operator, busy_device):
    schedules = {s.id: s.name for s in db.session.scalars(select(Schedule))}
    (rule,) = db.session.scalars(select(Rule)).all()
    login_as(operator)
    post_delete(client, "devices", busy_device.id, token=csrf_token(client, "/admin/devices/"))
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "delete")).all()
    seen = {(e.object_type, e.object_id): e for e in events}
    parent = f"device {busy_device.id} oscar-board"
    for schedule_id, name in schedules.items():
        entry = seen[("schedule", str(schedule_id))]
        assert (entry.object_repr, entry.changes) == (name, {"deleted_with": parent})
    assert seen[("rule", str(rule.id))].changes == {"deleted_with": parent}
    for kind, number in (("command", 3), ("reading", 2), ("alert", 1)):
        assert seen[(kind, "")].changes == {"count": number, "deleted_with": parent}
    assert seen[("device", str(busy_device.id))].changes["name"] == ["oscar-board", None]
    assert len(events) == 7
    assert {(e.actor_id, e.via) for e in events} == {(operator.id, "admin")}


def test_without_the_csrf_token_nothing_is_deleted(client, db, login_as, operator, busy_device):
    login_as(operator)
    audited = count(AuditEvent)
    response = post_delete(client, "devices", busy_device.id)
    assert response.status_code == 400
    assert count(Device) == 1 and count(AuditEvent) == audited


def test_a_refused_delete_is_flashed_and_keeps_the_user(client, db, login_as, admin, device):
    login_as(admin)
    token = csrf_token(client, "/admin/users/")
    response = post_delete(client, "users", device.owner_id, token=token)
    assert response.status_code == 302
    assert "owns 1 device" in page_text(client.get("/admin/users/"))
    assert db.session.get(User, device.owner_id) is not None


def test_deleting_a_user_takes_their_rules_channels_and_tokens(client, db, login_as, admin):
    spare = factories.UserFactory(username="spare", role=Role.operator)
    factories.NotificationDeliveryFactory(
        channel=factories.NotificationChannelFactory(owner=spare, name="spare hook")
    )
    factories.PersonalTokenFactory(user=spare)
    login_as(admin)
    post_delete(client, "users", spare.id, token=csrf_token(client, "/admin/users/"))
    assert [count(m) for m in (NotificationChannel, NotificationDelivery, PersonalToken)] == [
        0,
        0,
        0,
    ]
    types = db.session.scalars(
        select(AuditEvent.object_type).where(AuditEvent.action == "delete")
    ).all()
    assert sorted(types) == [
        "notification_channel",
        "notification_delivery",
        "personal_token",
        "user",
    ]


# ---- the list: the row's button and the bulk "Delete" -----------------------------------------


def test_the_rows_delete_button_opens_the_page(client, login_as, operator, device):
    login_as(operator)
    html = client.get("/admin/devices/").get_data(as_text=True)
    link = re.search(r'<a class="icon" href="([^"]*)" title="Delete Record"', html)
    assert link and link.group(1).startswith(f"/admin/devices/delete/?id={device.id}&amp;url=")
    assert "data-confirm" not in html


def test_bulk_delete_shows_the_page_for_the_selected_rows_first(
    client, db, login_as, operator, device
):
    second = factories.DeviceFactory(owner=operator, name="oscar-second")
    factories.ScheduleFactory(device=second, name="Second's schedule")
    login_as(operator)
    token = csrf_token(client, "/admin/devices/")
    response = client.post(
        "/admin/devices/action/",
        data={"action": "review_delete", "rowid": [device.id, second.id], "csrf_token": token},
    )
    assert response.status_code == 302
    assert f"id={device.id}&id={second.id}" in response.location
    text = page_text(client.get(response.location))
    assert "Delete 2 records?" in text
    assert "oscar-board" in text and "oscar-second" in text and "Second's schedule" in text
    assert count(Device) == 2
    post_delete(client, "devices", device.id, second.id, token=token)
    assert count(Device) == 0
    assert "2 records were successfully deleted." in page_text(client.get("/admin/devices/"))


def test_the_list_offers_delete_as_the_page_not_at_once(client, login_as, operator, device):
    login_as(operator)
    html = client.get("/admin/devices/").get_data(as_text=True)
    assert 'data-action="review_delete"' in html
    assert 'data-action="delete"' not in html


def test_bulk_page_leaves_out_rows_out_of_reach(client, login_as, operator, device, other_device):
    login_as(operator)
    response = client.get(f"/admin/devices/delete/?id={device.id}&id={other_device.id}")
    text = page_text(response)
    assert "oscar-board" in text and "olga-board" not in text


def test_bulk_page_names_the_rows_that_cannot_go(client, login_as, admin, device):
    spare = factories.UserFactory(username="spare", role=Role.operator)
    login_as(admin)
    text = page_text(client.get(f"/admin/users/delete/?id={spare.id}&id={device.owner_id}"))
    assert "These cannot be deleted: oscar: oscar owns 1 device(s)" in text
    assert "Yes, delete" in text


# ---- who may ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_viewer_gets_403(client, db, login_as, viewer, device, method):
    login_as(viewer)
    token = csrf_token(client, "/admin/devices/")
    response = getattr(client, method)(
        f"/admin/devices/delete/?id={device.id}", data={"csrf_token": token}
    )
    assert response.status_code == 403
    assert count(Device) == 1


def test_an_operator_gets_404_for_another_operators_device(
    client, login_as, operator, other_device
):
    login_as(operator)
    assert client.get(f"/admin/devices/delete/?id={other_device.id}").status_code == 404


def test_an_operator_gets_404_for_the_users_page(client, login_as, operator, other_operator):
    login_as(operator)
    assert client.get(f"/admin/users/delete/?id={other_operator.id}").status_code == 404


@pytest.mark.parametrize("query", ["", "?id=abc", "?id=99999999999999999999", "?id=1x&id=%00"])
def test_junk_or_no_ids_are_404(client, login_as, admin, query):
    login_as(admin)
    assert client.get(f"/admin/devices/delete/{query}").status_code == 404


def test_anonymous_is_sent_to_log_in(client, device):
    response = client.get(f"/admin/devices/delete/?id={device.id}")
    assert response.status_code == 302 and "/login?next=" in response.location


# ---- "Delete" on details and edit pages ------------------------------------------------------


def delete_link(html: str) -> str | None:
    found = re.search(r'data-testid="delete-link"\s+href="([^"]+)"', html)
    return html_lib.unescape(found.group(1)) if found else None


@pytest.fixture
def deletable(operator, device):
    """One object of each view that deletes, the operator's (the users view: a spare user)."""
    return {
        "devices": device,
        "schedules": factories.ScheduleFactory(device=device, name="Nightly"),
        "rules": make_rule(operator, device, "too hot"),
        "channels": factories.NotificationChannelFactory(owner=operator, name="ops hook"),
        "users": factories.UserFactory(username="spare", role=Role.viewer),
    }


@pytest.mark.parametrize("view", ["devices", "schedules", "rules", "channels", "users"])
@pytest.mark.parametrize("page", ["details", "edit"])
def test_details_and_edit_pages_offer_delete_as_the_confirmation_page(
    client, login_as, admin, operator, deletable, view, page
):
    obj = deletable[view]
    login_as(admin if view == "users" else operator)
    here = f"/admin/{view}/{page}/?id={obj.id}&url=/admin/{view}/"
    url = delete_link(client.get(here).get_data(as_text=True))
    assert url, f"no Delete on {here}"
    where = urlsplit(url)
    assert where.path == f"/admin/{view}/delete/"
    assert parse_qs(where.query) == {
        "id": [str(obj.id)],
        "url": [f"/admin/{view}/"],
        "back": [here],
    }
    confirmation = client.get(url)
    assert confirmation.status_code == 200
    assert f"Delete “{obj}”?" in page_text(confirmation)


@pytest.mark.parametrize("view", ["devices", "schedules", "rules", "channels"])
@pytest.mark.parametrize("page", ["details"])
def test_a_viewer_gets_no_delete(client, login_as, viewer, deletable, view, page):
    login_as(viewer)
    response = client.get(f"/admin/{view}/{page}/?id={deletable[view].id}")
    assert response.status_code == 200
    assert 'data-testid="delete-link"' not in response.get_data(as_text=True)


def test_a_rule_of_someone_else_shows_no_delete_to_a_viewer_but_does_to_an_admin(
    client, login_as, admin, viewer, deletable
):
    rule = deletable["rules"]
    login_as(admin)
    assert delete_link(client.get(f"/admin/rules/details/?id={rule.id}").get_data(as_text=True))
    client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")})
    login_as(viewer)
    html = client.get(f"/admin/rules/details/?id={rule.id}").get_data(as_text=True)
    assert 'data-testid="delete-link"' not in html


@pytest.mark.parametrize(
    "path",
    [
        "/admin/commands/details/?id={command}",
        "/admin/readings/details/?id={reading}",
        "/admin/audit/details/?id={event}",
    ],
)
def test_pages_of_rows_that_are_not_deleted_offer_no_delete(client, login_as, admin, device, path):
    ids = {
        "command": factories.CommandFactory(device=device).id,
        "reading": factories.ReadingFactory(device=device).id,
        "event": factories.AuditEventFactory().id,
    }
    login_as(admin)
    response = client.get(path.format(**ids))
    assert response.status_code == 200
    assert 'data-testid="delete-link"' not in response.get_data(as_text=True)


def test_no_take_me_back_returns_to_the_details_page_and_yes_to_the_list(
    client, db, login_as, operator, device
):
    schedule = factories.ScheduleFactory(device=device, name="Nightly")
    login_as(operator)
    details = f"/admin/schedules/details/?id={schedule.id}&url=%2Fadmin%2Fschedules%2F"
    confirmation = client.get(delete_link(client.get(details).get_data(as_text=True)))
    html = confirmation.get_data(as_text=True)
    back = re.search(r'<a class="btn btn-secondary" href="([^"]+)">No, take me back</a>', html)
    assert back and html_lib.unescape(back.group(1)) == details
    form = re.search(
        r'<form method="post" action="/admin/schedules/delete/">(.*?)</form>', html, re.S
    )
    assert form
    hidden = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', form.group(1))
    fields = dict(hidden)
    response = client.post("/admin/schedules/delete/", data=fields)
    assert response.status_code == 302 and response.location.endswith("/admin/schedules/")
    assert count(Schedule) == 0


@pytest.mark.parametrize(
    "back", ["//evil.example/x", "javascript:alert(1)", "https://evil.example/"]
)
def test_a_foreign_back_address_is_replaced_by_the_list(client, login_as, operator, device, back):
    login_as(operator)
    query = {"id": device.id, "url": "/admin/devices/", "back": back}
    html = client.get("/admin/devices/delete/", query_string=query).get_data(as_text=True)
    assert '<a class="btn btn-secondary" href="/admin/devices/">No, take me back</a>' in html


def test_flask_admins_immediate_bulk_delete_is_refused(client, db, login_as, operator, device):
    login_as(operator)
    token = csrf_token(client, "/admin/devices/")
    response = client.post(
        "/admin/devices/action/",
        data={"action": "delete", "rowid": [device.id], "csrf_token": token},
    )
    assert response.status_code == 403
    assert count(Device) == 1


@pytest.mark.parametrize("name", ["details", "edit"])
def test_the_copied_details_and_edit_pages_have_every_block_of_flask_admins(app, name):
    """admin/model/details.html and edit.html copy Flask-Admin's (for the Delete link): an
    upgrade that adds or drops a block there fails here."""

    def blocks(folder: Path) -> set[str]:
        environment = jinja2.Environment(loader=jinja2.FileSystemLoader(folder))
        source = environment.loader.get_source(environment, f"admin/model/{name}.html")[0]
        return {block.name for block in environment.parse(source).find_all(jinja2.nodes.Block)}

    theirs = Path(flask_admin.__file__).parent / "templates" / "bootstrap4"
    ours = Path(app.root_path) / app.template_folder
    assert blocks(ours) == blocks(theirs)
