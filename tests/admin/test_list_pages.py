"""What a list page shows per row: cells, times in the viewer's zone, links, checkboxes, counts."""

import html as htmllib
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import url_for

from portal.admin.base import ROW_ID_MARK, row_url_builder
from portal.admin.records import CommandView
from tests import factories

CREATED = datetime(2026, 1, 15, 12, 34, 56, tzinfo=UTC)


def details_links(page: str) -> list[dict[str, list[str]]]:
    hrefs = re.findall(r'href="(/admin/commands/details/\?[^"]+)"', page)
    return [parse_qs(urlsplit(htmllib.unescape(h)).query) for h in hrefs]


@pytest.mark.parametrize(
    "zone,created,shown",
    [
        ("Europe/Paris", CREATED, "2026-01-15 13:34 CET"),
        ("Europe/Paris", CREATED.replace(month=7), "2026-07-15 14:34 CEST"),
        ("UTC", CREATED, "2026-01-15 12:34 UTC"),
        ("Mars/Olympus", CREATED, "2026-01-15 12:34 UTC"),
    ],
)
def test_list_shows_instants_in_the_viewers_zone_with_utc_on_hover(
    client, db, login_as, admin, device, zone, created, shown
):
    admin.timezone = zone
    factories.CommandFactory(device=device, created_at=created)
    db.session.commit()
    login_as(admin)
    page = client.get("/admin/commands/").get_data(as_text=True)
    iso = created.isoformat()
    assert f'<time datetime="{iso}" title="{iso[:10]} {iso[11:19]} UTC">{shown}</time>' in page


def test_cells_are_escaped(client, login_as, admin, device):
    factories.CommandFactory(device=device, action="<b>x</b>")
    login_as(admin)
    page = client.get("/admin/commands/").get_data(as_text=True)
    assert '<td class="col-action">&lt;b&gt;x&lt;/b&gt;</td>' in page
    assert "<b>x</b>" not in page


def test_each_row_links_to_its_details_and_back_to_the_filtered_list(
    client, login_as, admin, device, other_device
):
    commands = factories.CommandFactory.create_batch(3, device=device)
    factories.CommandFactory(device=other_device)
    login_as(admin)
    page = client.get(f"/admin/commands/?flt0_device_devices_name_equals={device.name}").get_data(
        as_text=True
    )
    links = details_links(page)
    assert [link["id"] for link in links] == [[str(c.id)] for c in reversed(commands)]
    back = urlsplit(links[0]["url"][0])
    assert back.path == "/admin/commands/"
    assert parse_qs(back.query)["flt0_device_devices_name_equals"] == [device.name]


@pytest.mark.parametrize(
    "return_url",
    [
        "/admin/commands/?page_size=50",
        f"/admin/commands/?search={ROW_ID_MARK}&page=2",
        "/admin/commands/?search=a b&c=ü&d=%2F",
    ],
)
@pytest.mark.parametrize("row_id", [7, "a b", "x&y=1", "ü/?#"])
def test_row_urls_equal_url_for(app, return_url, row_id):
    with app.test_request_context("/admin/commands/"):
        row_url = row_url_builder(url_for, return_url)
        for endpoint in ("commands.details_view", "devices.edit_view"):
            assert row_url(endpoint, row_id) == url_for(endpoint, id=row_id, url=return_url)


@pytest.mark.parametrize("user,checkboxes", [("operator", True), ("viewer", False)])
def test_writers_get_a_checkbox_per_row_readers_none(
    client, login_as, request, device, user, checkboxes
):
    command = factories.CommandFactory(device=device)
    login_as(request.getfixturevalue(user))
    page = client.get("/admin/commands/").get_data(as_text=True)
    box = (
        f'<input type="checkbox" name="rowid" class="action-checkbox" value="{command.id}" '
        'title="Select record" />'
    )
    assert (box in page) is checkboxes
    assert len(details_links(page)) == 1


def test_an_empty_list_says_so(client, login_as, admin):
    login_as(admin)
    page = client.get("/admin/commands/?flt0_device_devices_name_equals=nothing-so-named").get_data(
        as_text=True
    )
    assert "There are no items in the table." in page


@pytest.mark.parametrize(
    "name,shown,capped", [("boiler", "List (3+)", True), ("pump", "List (2)", False)]
)
def test_capped_count_follows_a_filter_through_the_device(
    client, login_as, admin, monkeypatch, name, shown, capped
):
    monkeypatch.setattr(CommandView, "count_cap", 3)
    factories.CommandFactory.create_batch(5, device=factories.DeviceFactory(name="boiler"))
    factories.CommandFactory.create_batch(2, device=factories.DeviceFactory(name="pump"))
    login_as(admin)
    page = client.get(f"/admin/commands/?flt0_device_devices_name_equals={name}").get_data(
        as_text=True
    )
    assert shown in page
    assert ('data-testid="count-capped"' in page) is capped
