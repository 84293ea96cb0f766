"""Who may open, change and export what in the admin; rows out of reach answer 404."""

from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from portal.models import Command, Device, Role
from tests import factories
from tests.conftest import csrf_token

MODEL_VIEWS = ["devices", "schedules", "commands", "readings"]
ADMIN_VIEWS = ["users", "tokens", "audit"]


@pytest.fixture
def fleet(device, other_device):
    """One device (with a schedule, a command and a reading) for each operator."""
    for d in (device, other_device):
        factories.ScheduleFactory(device=d, name=f"{d.name}-schedule")
        factories.CommandFactory(device=d, action=f"{d.name}.act")
        factories.ReadingFactory(device=d, metric=f"{d.name.replace('-', '_')}_temp")
    return device, other_device


@pytest.mark.parametrize("view", MODEL_VIEWS + ADMIN_VIEWS + [""])
def test_anonymous_is_sent_to_login(client, view):
    response = client.get(f"/admin/{view}/" if view else "/admin/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("role", ["admin", "operator", "viewer"])
@pytest.mark.parametrize("view", MODEL_VIEWS)
def test_every_role_can_list_the_model_views(client, login_as, request, role, view, fleet):
    login_as(request.getfixturevalue(role))
    assert client.get(f"/admin/{view}/").status_code == 200


@pytest.mark.parametrize("role", ["operator", "viewer"])
@pytest.mark.parametrize("view", ADMIN_VIEWS)
def test_admin_only_views_are_404_for_others(client, login_as, request, role, view):
    login_as(request.getfixturevalue(role))
    assert client.get(f"/admin/{view}/").status_code == 404
    assert client.get(f"/admin/{view}/new/").status_code == 404


@pytest.mark.parametrize("view", ADMIN_VIEWS)
def test_admin_opens_admin_only_views(client, login_as, admin, view):
    login_as(admin)
    assert client.get(f"/admin/{view}/").status_code == 200


def test_admin_only_views_are_not_in_an_operators_menu(client, login_as, operator):
    login_as(operator)
    html = client.get("/admin/").get_data(as_text=True)
    assert "/admin/devices/" in html
    assert "/admin/users/" not in html and "/admin/audit/" not in html


@pytest.mark.parametrize(
    "view,marker",
    [
        ("devices", "olga-board"),
        ("schedules", "olga-board-schedule"),
        ("commands", "olga-board.act"),
        ("readings", "olga_board_temp"),
    ],
)
def test_operator_lists_only_their_own_rows(client, login_as, operator, fleet, view, marker):
    login_as(operator)
    html = client.get(f"/admin/{view}/").get_data(as_text=True)
    assert marker.replace("olga", "oscar") in html
    assert marker not in html


@pytest.mark.parametrize("view", ["devices", "commands", "readings", "schedules"])
def test_operator_exports_only_their_own_rows(client, login_as, operator, fleet, view):
    login_as(operator)
    response = client.get(f"/admin/{view}/export/csv/")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "olga" not in body


def test_operator_search_does_not_reach_other_devices(client, login_as, operator, fleet):
    login_as(operator)
    html = client.get("/admin/devices/?search=olga").get_data(as_text=True)
    assert "olga-board" not in html.split("</table>")[0].split("<table")[-1]


@pytest.mark.parametrize("action", ["details", "edit"])
def test_operator_gets_404_for_another_operators_device(
    client, login_as, operator, other_device, action
):
    login_as(operator)
    assert client.get(f"/admin/devices/{action}/?id={other_device.id}").status_code == 404


def test_operator_cannot_delete_another_operators_device(
    client, db, login_as, operator, other_device
):
    login_as(operator)
    token = csrf_token(client, "/admin/devices/")
    response = client.post(
        "/admin/devices/delete/", data={"id": other_device.id, "csrf_token": token}
    )
    assert response.status_code == 404
    assert db.session.get(Device, other_device.id) is not None


def test_bulk_delete_skips_rows_out_of_reach(client, db, login_as, operator, device, other_device):
    """Through the page before a bulk delete: the selection leads to it with only the rows in
    reach, and a form posted with another operator's id as well deletes only those."""
    login_as(operator)
    token = csrf_token(client, "/admin/devices/")
    chosen = client.post(
        "/admin/devices/action/",
        data={
            "action": "review_delete",
            "rowid": [device.id, other_device.id],
            "csrf_token": token,
        },
    )
    assert chosen.status_code == 302
    assert parse_qs(urlsplit(chosen.location).query)["id"] == [str(device.id)]
    client.post(
        "/admin/devices/delete/",
        data={"id": [device.id, other_device.id], "csrf_token": token},
    )
    db.session.expire_all()
    assert db.session.get(Device, device.id) is None
    assert db.session.get(Device, other_device.id) is not None


@pytest.mark.parametrize(
    "path",
    [
        "/admin/devices/edit/?id=abc",
        "/admin/devices/details/?id=1x",
        "/admin/commands/details/?id=999999",
    ],
)
def test_malformed_or_absent_ids_are_404(client, login_as, admin, path):
    login_as(admin)
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("view", ["devices", "schedules", "commands"])
def test_viewer_gets_403_on_create(client, login_as, viewer, view):
    login_as(viewer)
    assert client.get(f"/admin/{view}/new/").status_code == 403


def test_viewer_sees_all_devices_but_cannot_edit_or_delete(client, db, login_as, viewer, device):
    login_as(viewer)
    assert client.get(f"/admin/devices/details/?id={device.id}").status_code == 200
    assert client.get(f"/admin/devices/edit/?id={device.id}").status_code == 403
    token = csrf_token(client, "/admin/devices/")
    response = client.post("/admin/devices/delete/", data={"id": device.id, "csrf_token": token})
    assert response.status_code == 403
    assert db.session.get(Device, device.id) is not None


def test_viewer_page_has_no_write_buttons(client, login_as, viewer, device):
    login_as(viewer)
    html = client.get("/admin/devices/").get_data(as_text=True)
    assert "/admin/devices/new/" not in html
    assert "/admin/devices/edit/" not in html


def test_viewer_cannot_run_bulk_actions(client, db, login_as, viewer, device):
    login_as(viewer)
    token = csrf_token(client, "/admin/devices/")
    response = client.post(
        "/admin/devices/action/",
        data={"action": "disable", "rowid": [device.id], "csrf_token": token},
    )
    assert response.status_code == 403
    db.session.expire_all()
    assert db.session.get(Device, device.id).enabled is True


def test_operator_device_choices_hold_only_their_devices(client, login_as, operator, fleet):
    login_as(operator)
    html = client.get("/admin/commands/new/").get_data(as_text=True)
    assert "oscar-board" in html and "olga-board" not in html


def test_operator_cannot_send_a_command_to_another_operators_device(
    client, db, login_as, operator, other_device
):
    login_as(operator)
    token = csrf_token(client, "/admin/commands/new/")
    client.post(
        "/admin/commands/new/",
        data={
            "device": other_device.id,
            "action": "relay.on",
            "payload": "{}",
            "expires_in": 60,
            "csrf_token": token,
        },
    )
    assert db.session.scalar(select(Command).limit(1)) is None


def test_admin_forms_without_csrf_are_rejected(client, db, login_as, admin):
    login_as(admin)
    response = client.post("/admin/devices/new/", data={"name": "sneaky", "kind": "esp32"})
    assert response.status_code == 400
    assert db.session.scalar(select(Device).where(Device.name == "sneaky")) is None


@pytest.mark.parametrize("role", [Role.admin, Role.operator])
def test_writers_see_create_buttons(client, login_as, role):
    user = factories.UserFactory(role=role)
    login_as(user)
    assert "/admin/devices/new/" in client.get("/admin/devices/").get_data(as_text=True)


@pytest.mark.parametrize("view", MODEL_VIEWS + ["users"])
def test_export_streams_every_row_outside_the_tests_app_context(
    client, db, login_as, admin, fleet, view
):
    """As under gunicorn: the request is the only app context, and its session closes when the
    view returns, before the CSV streams. (The tests' own app context would hide a lazy load.)"""
    import threading

    factories.CommandFactory(
        device=fleet[0],
        action="scheduled.act",
        schedule=factories.ScheduleFactory(device=fleet[0], name="nightly"),
    )
    login_as(admin)
    answer = {}

    def export() -> None:
        response = client.get(f"/admin/{view}/export/csv/")
        answer.update(status=response.status_code, body=response.get_data(as_text=True))

    worker = threading.Thread(target=export)
    worker.start()
    worker.join()
    assert answer["status"] == 200
    lines = answer["body"].strip().splitlines()
    assert len(lines) > 1, lines
    if view == "commands":
        assert any("nightly" in line for line in lines[1:])
