"""Device status (online / stale / never) in the device list and the dashboard's links, device
filters by name, and the big lists saying which rows they show."""

import re
from datetime import timedelta

import pytest

from portal.admin.records import ReadingView
from portal.models import utcnow
from portal.services import fleet
from tests import factories

ONLINE_SECONDS = 300
# The device list's name cell: a link to the device's page.
NAME_LINK = (
    r'class="col-name"><a href="/admin/devices/details/\?id=\d+[^"]*" '
    r'data-testid="device-link">([^<]+)<'
)


@pytest.fixture
def fleet_of_devices(db, operator, other_operator):
    """Two online, three stale and one never seen device of the operator (one of them just
    inside the window), and one of each of another operator's."""
    now = utcnow()
    seen = {
        "online-a": now - timedelta(seconds=10),
        "online-edge": now - timedelta(seconds=ONLINE_SECONDS - 30),
        "stale-a": now - timedelta(seconds=ONLINE_SECONDS + 30),
        "stale-b": now - timedelta(days=3),
        "stale-c": now - timedelta(hours=1),
        "never-a": None,
    }
    for name, at in seen.items():
        factories.DeviceFactory(owner=operator, name=name, last_seen_at=at)
    for name, at in (("theirs-online", now), ("theirs-never", None)):
        factories.DeviceFactory(owner=other_operator, name=name, last_seen_at=at)
    db.session.commit()
    return seen


def badges(page: str) -> dict[str, str]:
    """Device name -> the status badge in its row."""
    rows = re.findall(r"<tr>(.*?)</tr>", page, re.S)
    found = {}
    for row in rows:
        name = re.search(NAME_LINK, row)
        badge = re.search(r'data-testid="device-status">([^<]+)<', row)
        if name and badge:
            found[name.group(1)] = badge.group(1)
    return found


def test_each_device_row_shows_its_status_badge(client, login_as, operator, fleet_of_devices):
    login_as(operator)
    page = client.get("/admin/devices/").get_data(as_text=True)
    assert badges(page) == {name: name.split("-")[0] for name in fleet_of_devices}


@pytest.mark.parametrize("status", ["online", "stale", "never"])
def test_status_filter_agrees_with_the_dashboard_counts(
    client, login_as, operator, fleet_of_devices, status
):
    login_as(operator)
    page = client.get(f"/admin/devices/?flt0_status_equals={status}").get_data(as_text=True)
    counts = fleet.device_counts(operator, utcnow(), ONLINE_SECONDS)
    shown = badges(page)
    assert set(shown.values()) == {status}
    assert len(shown) == counts[status] == sum(n.startswith(status) for n in fleet_of_devices)


@pytest.mark.parametrize("key", ["online", "stale", "never", "total"])
def test_each_dashboard_card_opens_the_list_with_that_many_rows(
    client, login_as, operator, fleet_of_devices, key
):
    login_as(operator)
    dashboard = client.get("/admin/").get_data(as_text=True)
    card = re.search(rf'href="([^"]+)" data-testid="devices-{key}-link"', dashboard)
    number = re.search(rf'data-testid="devices-{key}">(\d+)<', dashboard)
    assert card and number
    page = client.get(card.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert len(badges(page)) == int(number.group(1)) > 0
    if key != "total":
        assert set(badges(page).values()) == {key}


@pytest.mark.parametrize("junk", ["", "online'", "ONLINE", "x" * 5000, "\x00", "1"])
def test_a_junk_status_is_ignored_not_an_error(client, login_as, operator, fleet_of_devices, junk):
    login_as(operator)
    response = client.get("/admin/devices/", query_string={"flt0_status_equals": junk})
    assert response.status_code == 200
    assert len(badges(response.get_data(as_text=True))) == len(fleet_of_devices)


@pytest.mark.parametrize("view", ["commands", "readings"])
def test_filter_by_device_name_shows_only_that_devices_rows(client, login_as, admin, view):
    boiler = factories.DeviceFactory(name="boiler")
    pump = factories.DeviceFactory(name="pump")
    make = factories.CommandFactory if view == "commands" else factories.ReadingFactory
    make.create_batch(2, device=boiler)
    make.create_batch(3, device=pump)
    login_as(admin)
    page = client.get(f"/admin/{view}/?flt0_device_devices_name_equals=pump").get_data(as_text=True)
    assert "List (3)" in page
    assert ">pump<" in page and ">boiler<" not in page


@pytest.mark.parametrize("view", ["commands", "readings"])
def test_device_filter_suggests_only_the_names_the_user_may_see(
    client, login_as, operator, device, other_device, view
):
    login_as(operator)
    page = client.get(f"/admin/{view}/").get_data(as_text=True)
    suggested = re.search(r'<datalist id="suggest-device_devices_name"[^>]*>(.*?)</datalist>', page)
    assert suggested
    assert re.findall(r'<option value="([^"]+)">', suggested.group(1)) == [device.name]
    assert "Device ID" not in page  # no filter asks for ids a page does not show


def test_a_deep_page_says_which_rows_it_shows(client, login_as, admin, device, monkeypatch):
    monkeypatch.setattr(ReadingView, "page_size", 2)
    factories.ReadingFactory.create_batch(7, device=device)
    login_as(admin)
    page = client.get("/admin/readings/?page=2").get_data(as_text=True)
    assert "Rows 5–6 of 7" in page
    last = client.get("/admin/readings/?page=3").get_data(as_text=True)
    assert "Rows 7–7 of 7" in last


def test_past_a_capped_count_the_position_says_so_and_paging_goes_on(
    client, login_as, admin, device, monkeypatch
):
    monkeypatch.setattr(ReadingView, "page_size", 2)
    monkeypatch.setattr(ReadingView, "count_cap", 3)
    readings = factories.ReadingFactory.create_batch(9, device=device)
    login_as(admin)
    page = client.get("/admin/readings/?sort=0&desc=1&page=3").get_data(as_text=True)
    assert "Rows 7–8 of 3+" in page
    last_shown = readings[-8].id  # newest first: rows 7 and 8 are the third and second made
    older = re.search(r'href="(/admin/readings/\?[^"]*)" data-testid="page-next"', page)
    assert older  # past the count
    assert f"after={last_shown}" in older.group(1) and "page=4" in older.group(1)
