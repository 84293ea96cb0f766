"""Live parts of pages (portal/admin/live.py): what a poller is answered, on both databases.

The browser side (htmx putting the parts in place) is tests/e2e/test_live_pages.py."""

import re
from datetime import timedelta

import pytest

from portal.admin.live import VERSION_HEADER
from portal.extensions import db as _db
from portal.models import UserSession, utcnow
from portal.services import commands
from tests import factories


def poller(page: str) -> dict[str, str]:
    """The page's poller: its URL, version and the ids of the parts it keeps."""
    found = re.search(r"<div hidden data-live-poller ([^>]*)>", page)
    assert found, "the page has no live poller"
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', found.group(1)))
    return {
        "url": attrs["hx-get"].replace("&amp;", "&"),
        "version": attrs["data-live-version"],
        "ids": attrs["hx-select-oob"],
        "trigger": attrs["hx-trigger"],
    }


def poll(client, url: str, version: str = ""):
    return client.get(url, headers={VERSION_HEADER: version, "HX-Request": "true"})


def part(html: str, element_id: str) -> str:
    """The element with this id, roughly: from its start tag on (enough for assertions)."""
    start = html.index(f'id="{element_id}"')
    return html[start:]


# ---- the dashboard ------------------------------------------------------------------------
def test_the_dashboard_is_answered_204_until_something_in_it_changes(
    client, login_as, operator, device, db
):
    login_as(operator)
    page = client.get("/admin/").get_data(as_text=True)
    live = poller(page)
    assert live["ids"] == "#dashboard-live"
    assert live["trigger"] == "every 5s, portal:refresh"

    quiet = poll(client, live["url"], live["version"])
    assert quiet.status_code == 204
    assert quiet.get_data() == b""
    assert quiet.headers[VERSION_HEADER] == live["version"]
    assert quiet.headers["Cache-Control"] == "no-store"

    commands.enqueue_command(operator, device.id, "relay.on", {})
    db.session.commit()
    moved = poll(client, live["url"], live["version"])
    assert moved.status_code == 200
    assert moved.headers[VERSION_HEADER] != live["version"]
    html = moved.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="dashboard-live">')
    assert re.search(r'data-testid="commands-queued">1<', html)

    again = poll(client, live["url"], moved.headers[VERSION_HEADER])
    assert again.status_code == 204


def test_a_poller_without_a_version_gets_the_parts(client, login_as, operator):
    login_as(operator)
    answer = poll(client, "/admin/live/")
    assert answer.status_code == 200
    assert 'id="dashboard-live"' in answer.get_data(as_text=True)


def test_a_poll_after_the_session_ended_asks_htmx_to_open_the_login_page(client):
    answer = client.get(
        "/admin/live/",
        headers={
            VERSION_HEADER: "x",
            "HX-Request": "true",
            "HX-Current-URL": "http://localhost/admin/devices/details/?id=3",
        },
    )
    assert answer.status_code == 401
    assert answer.headers["HX-Redirect"] == ("/login?next=/admin/devices/details/?id%3D3")
    assert answer.get_data() == b""  # nothing to swap into the page


def test_a_foreign_current_url_is_not_taken_as_the_next_page(client):
    answer = client.get(
        "/admin/devices/live/?id=1",
        headers={"HX-Request": "true", "HX-Current-URL": "https://evil.example/admin/"},
    )
    assert answer.status_code == 401
    assert answer.headers["HX-Redirect"] == "/login?next="


def test_polls_do_not_keep_an_idle_session_alive(app, client, login_as, operator, db):
    app.config["TOKEN_TOUCH_SECONDS"] = 1
    login_as(operator)
    an_hour_ago = utcnow() - timedelta(hours=1)
    db.session.execute(_db.update(UserSession).values(last_seen_at=an_hour_ago))
    db.session.commit()

    def last_seen():
        db.session.expire_all()
        return db.session.execute(_db.select(UserSession.last_seen_at)).scalar_one()

    assert poll(client, "/admin/live/").status_code == 200
    assert last_seen() == an_hour_ago  # the poll was not activity
    assert client.get("/admin/").status_code == 200
    assert last_seen() > an_hour_ago  # the person's page view was


def test_live_updates_can_be_turned_off(app, client, login_as, operator):
    app.config["LIVE_SECONDS"] = 0
    login_as(operator)
    page = client.get("/admin/").get_data(as_text=True)
    assert "data-live-poller" not in page
    assert 'id="dashboard-live"' in page


# ---- the device page ----------------------------------------------------------------------
def test_the_device_page_keeps_its_status_commands_and_alerts_live(
    client, login_as, operator, device, db
):
    login_as(operator)
    page = client.get(f"/admin/devices/details/?id={device.id}").get_data(as_text=True)
    live = poller(page)
    assert live["ids"].startswith("#device-summary,#device-commands,#device-alerts")
    assert poll(client, live["url"], live["version"]).status_code == 204

    command = commands.enqueue_command(operator, device.id, "relay.on", {})
    db.session.commit()
    answer = poll(client, live["url"], live["version"])
    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    assert f'data-command-id="{command.id}"' in part(html, "device-commands")
    for element_id in ("device-summary", "device-commands", "device-alerts"):
        assert f'id="{element_id}"' in html
    assert 'data-testid="device-status">never<' in html

    device.last_seen_at = utcnow()
    db.session.commit()
    seen = poll(client, live["url"], answer.headers[VERSION_HEADER])
    assert seen.status_code == 200
    assert 'data-testid="device-status">online<' in seen.get_data(as_text=True)


def test_the_connect_panel_gives_way_once_the_device_reports(
    client, login_as, operator, device, db
):
    login_as(operator)
    page = client.get(f"/admin/devices/details/?id={device.id}").get_data(as_text=True)
    assert "Connect it" in page
    live = poller(page)
    assert live["url"].endswith("&connect=1")
    assert live["ids"].endswith(",#connect-panel")
    assert poll(client, live["url"], live["version"]).status_code == 204

    device.last_seen_at = utcnow()
    db.session.commit()
    html = poll(client, live["url"], live["version"]).get_data(as_text=True)
    assert "has reported in: it is connected." in part(html, "connect-panel")
    assert "Connect it" not in html

    # A page that showed no panel (the device was seen) does not ask.
    page = client.get(f"/admin/devices/details/?id={device.id}").get_data(as_text=True)
    assert "connect=1" not in poller(page)["url"]
    assert "#connect-panel" not in poller(page)["ids"]


def test_a_device_out_of_reach_is_not_polled(client, login_as, operator, other_device):
    login_as(operator)
    assert poll(client, f"/admin/devices/live/?id={other_device.id}").status_code == 404
    for junk in ("", "abc", "99999999999999999999999", "-1"):
        assert poll(client, f"/admin/devices/live/?id={junk}").status_code == 404


def test_a_viewer_sees_the_live_device_page_without_its_buttons(
    client, login_as, viewer, device, db
):
    commands.enqueue_command(device.owner, device.id, "relay.on", {})
    db.session.commit()
    login_as(viewer)
    html = poll(client, f"/admin/devices/live/?id={device.id}").get_data(as_text=True)
    assert "relay.on" in html
    assert "Rotate token" not in html
    assert 'data-testid="acknowledge"' not in html


# ---- the device list ----------------------------------------------------------------------
def test_the_device_list_keeps_each_rows_status_live(client, login_as, operator, db):
    mine = [factories.DeviceFactory(owner=operator, name=f"board-{i}") for i in range(3)]
    db.session.commit()
    login_as(operator)
    page = client.get("/admin/devices/").get_data(as_text=True)
    live = poller(page)
    ids = {f"#device-status-{d.id}" for d in mine}
    assert set(live["ids"].split(",")) == ids
    for d in mine:
        assert f'id="device-status-{d.id}"' in page

    first = poll(client, live["url"], live["version"])
    version = first.headers[VERSION_HEADER]
    assert poll(client, live["url"], version).status_code == 204
    mine[1].last_seen_at = utcnow()
    db.session.commit()
    answer = poll(client, live["url"], version)
    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    assert re.search(
        rf'id="device-status-{mine[1].id}"><span class="badge badge-success"[^>]*>online<', html
    )
    assert html.count('id="device-status-') == 3


def test_the_device_list_poll_shows_only_devices_in_reach(
    client, login_as, operator, device, other_device
):
    login_as(operator)
    html = poll(client, f"/admin/devices/live-status/?ids={device.id},{other_device.id}").get_data(
        as_text=True
    )
    assert f'id="device-status-{device.id}"' in html
    assert f'id="device-status-{other_device.id}"' not in html


@pytest.mark.parametrize(
    "ids", ["", "x", ",,,", "1,abc,2", "9" * 40, ",".join(["1"] * 5000), "\x00", "-3"]
)
def test_junk_ids_in_the_device_list_poll_never_break_it(client, login_as, operator, ids):
    login_as(operator)
    answer = poll(client, "/admin/devices/live-status/?ids=" + ids)
    assert answer.status_code in (200, 400)


def test_the_dashboard_tells_admins_how_much_data_there_is(
    client, login_as, admin, operator, device, db
):
    factories.ReadingFactory(device=device, recorded_at=utcnow() - timedelta(days=3))
    factories.ReadingFactory(device=device)
    device.readings_retention_days = 30
    db.session.commit()
    login_as(admin)
    page = client.get("/admin/").get_data(as_text=True)
    said = re.search(r'data-testid="data-size">(.*?)</p>', page, re.S).group(1)
    said = " ".join(said.split())
    oldest = (utcnow() - timedelta(days=3)).date().isoformat()
    assert said.startswith(f"About 2 readings, the oldest from {oldest}.")
    assert "Readings are kept 90 days." in said
    assert "1 device keeps them for a time of its own." in said
    login_as(operator)
    assert 'data-testid="data-size"' not in client.get("/admin/").get_data(as_text=True)
