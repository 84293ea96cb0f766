"""The big lists (readings, commands, audit) page by key: "newer / older" links that name the row
a page starts from. Walked by their links to the end and back, a list shows every row once and in
order, with its filter and sort kept; a key the list cannot use is flashed and ignored."""

from __future__ import annotations

import html as html_lib
import random
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, insert, select

from portal.admin.arguments import ListKey, key_text, list_key
from portal.admin.people import AuditView
from portal.admin.records import CommandView, ReadingView
from portal.extensions import db as _db
from portal.models import AuditEvent, Command, CommandSource, CommandStatus, Reading
from tests import factories

ROWS = 2_000
START = datetime(2026, 3, 1, tzinfo=UTC)
METRICS = ("humidity", "pressure", "temperature")
# Each list's sort argument is the column's place in its column_list.
READINGS_SORT = {"id": 0, "recorded_at": 4}
# The readings' own order: newest measured first (ReadingView.column_default_sort).
DEFAULT = ("recorded_at", True)
COMMANDS_SORT = {"created_at": 6}
AUDIT_SORT = {"created_at": 0}


def add_readings(devices, count: int = ROWS) -> None:
    """``count`` readings over ``devices``, with many ties in time, metric and value (so the
    order's tie-break by id is walked too)."""
    rng = random.Random(7)
    rows = [
        {
            "device_id": devices[n % len(devices)].id,
            "metric": rng.choice(METRICS),
            "value": rng.choice((-1.5, 0.0, 0.1, 21.5, 1e-05, 3.25)),
            "recorded_at": START + timedelta(seconds=rng.randrange(200)),
        }
        for n in range(count)
    ]
    _db.session.execute(insert(Reading), rows)
    _db.session.commit()


def row_ids(html: str, view: str) -> list[int]:
    """The ids of the rows a list page shows, top to bottom (from their details links)."""
    return [int(key) for key in re.findall(rf'href="/admin/{view}/details/\?id=(\d+)&amp;', html)]


def link(html: str, name: str) -> str | None:
    found = re.search(rf'<a class="page-link" href="([^"]+)" data-testid="page-{name}"', html)
    return html_lib.unescape(found.group(1)) if found else None


def walk(client, url: str, view: str, name: str) -> list[list[int]]:
    """Each page's row ids, following the ``name`` link ("next", "previous") from ``url``."""
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, url
        page = response.get_data(as_text=True)
        pages.append(row_ids(page, view))
        url = link(page, name)
        assert len(pages) <= ROWS, "the links go round in a circle"
    return pages


def expected(model, sort: str, desc: bool, where=None) -> list[int]:
    """The list's order as the database holds it: the sort column, then the id."""
    column = getattr(model, sort)
    order = [column.desc(), model.id.desc()] if desc else [column.asc(), model.id.asc()]
    query = select(model.id).order_by(*order)
    if where is not None:
        query = query.where(where)
    return list(_db.session.scalars(query))


def flat(pages: list[list[int]]) -> list[int]:
    return [key for page in pages for key in page]


def check_walk(client, url: str, view: str, want: list[int], size: int = 50) -> None:
    """From ``url`` (the first page) to the end by "next", then back by "previous": every row
    once, in order, each page full but the last."""
    forward = walk(client, url, view, "next")
    assert flat(forward) == want
    assert all(len(page) == size for page in forward[:-1])
    last_page_url = None
    page = client.get(url).get_data(as_text=True)
    while link(page, "next"):
        last_page_url = link(page, "next")
        page = client.get(last_page_url).get_data(as_text=True)
    backward = walk(client, last_page_url or url, view, "previous")
    assert flat(list(reversed(backward))) == want


@pytest.fixture
def two_devices(admin, device, other_device):
    return device, other_device


# ---- walking every row ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, sort, desc",
    [
        ("", *DEFAULT),
        (f"sort={READINGS_SORT['id']}&desc=1", "id", True),
        (f"sort={READINGS_SORT['recorded_at']}", "recorded_at", False),
    ],
    ids=["newest-first", "id-desc", "recorded-asc"],
)
def test_walking_the_readings_by_their_links_shows_every_row_once_in_order(
    client, login_as, two_devices, admin, query, sort, desc
):
    add_readings(two_devices)
    login_as(admin)
    want = expected(Reading, sort, desc)
    assert len(want) == ROWS
    check_walk(client, f"/admin/readings/?{query}", "readings", want)


@pytest.mark.parametrize(
    "sort, desc", [("id", True), ("recorded_at", True), ("recorded_at", False)]
)
def test_a_filtered_walk_keeps_its_filter_and_sort(
    client, login_as, two_devices, admin, sort, desc
):
    device, _ = two_devices
    add_readings(two_devices)
    login_as(admin)
    query = f"flt0_device_devices_name_equals={device.name}&flt1_metric_equals=temperature"
    if (sort, desc) != DEFAULT:
        query += f"&sort={READINGS_SORT[sort]}" + ("&desc=1" if desc else "")
    where = (Reading.device_id == device.id) & (Reading.metric == "temperature")
    want = expected(Reading, sort, desc, where)
    assert 100 < len(want) < ROWS // 2
    check_walk(client, f"/admin/readings/?{query}", "readings", want)


def test_an_operator_walks_only_their_own_readings(client, login_as, operator, two_devices):
    device, _ = two_devices
    add_readings(two_devices)
    login_as(operator)
    want = expected(Reading, *DEFAULT, Reading.device_id == device.id)
    check_walk(client, "/admin/readings/", "readings", want)


@pytest.mark.parametrize("sort, desc", [("id", True), ("created_at", True), ("created_at", False)])
def test_walking_the_commands_newest_or_oldest_first(client, login_as, admin, device, sort, desc):
    rng = random.Random(3)
    rows = [
        {
            "device_id": device.id,
            "action": "relay.on",
            "payload": {},
            "status": rng.choice(list(CommandStatus)),
            "source": CommandSource.person,
            "created_at": START + timedelta(seconds=rng.randrange(50)),
            "expires_at": START + timedelta(hours=1),
            "attempts": 0,
        }
        for _ in range(400)
    ]
    _db.session.execute(insert(Command), rows)
    _db.session.commit()
    login_as(admin)
    query = "" if sort == "id" else f"sort={COMMANDS_SORT[sort]}" + ("&desc=1" if desc else "")
    check_walk(client, f"/admin/commands/?{query}", "commands", expected(Command, sort, desc))


@pytest.mark.parametrize("sort, desc", [("id", True), ("created_at", False), ("created_at", True)])
def test_walking_the_audit_log(client, login_as, admin, sort, desc):
    rng = random.Random(5)
    rows = [
        {
            "created_at": START + timedelta(seconds=rng.randrange(30)),
            "actor_name": rng.choice(("alice", "oscar", "")),
            "action": "update",
            "object_type": "device",
            "object_id": str(n),
            "changes": {},
        }
        for n in range(300)
    ]
    _db.session.execute(insert(AuditEvent), rows)
    _db.session.commit()
    login_as(admin)  # logging in adds no entry, but take the order after it anyway
    query = "" if sort == "id" else f"sort={AUDIT_SORT[sort]}" + ("&desc=1" if desc else "")
    check_walk(client, f"/admin/audit/?{query}", "audit", expected(AuditEvent, sort, desc))


def test_from_the_oldest_page_newer_links_lead_back_to_the_newest(
    client, login_as, admin, two_devices
):
    add_readings(two_devices, 170)
    login_as(admin)
    want = expected(Reading, *DEFAULT)
    first = client.get("/admin/readings/").get_data(as_text=True)
    up = walk(client, link(first, "last"), "readings", "previous")
    assert up[0] == want[-50:]  # the oldest page: the last 50 rows
    assert up[-1] == want[:50]  # the newest page, full although 170 is no multiple of 50
    assert sorted(set(flat(up))) == sorted(want)
    for page in up:  # each page a stretch of the list, in its order
        start = want.index(page[0])
        assert want[start : start + len(page)] == page


# ---- the pager --------------------------------------------------------------------------------


def test_the_pager_speaks_of_newer_and_older_rows_and_says_where_it_is(
    client, login_as, admin, two_devices
):
    add_readings(two_devices, 120)
    login_as(admin)
    first = client.get("/admin/readings/").get_data(as_text=True)
    assert "Rows 1–50 of 120" in first
    assert link(first, "first") is None and link(first, "previous") is None
    second = client.get(link(first, "next")).get_data(as_text=True)
    assert "Rows 51–100 of 120" in second
    assert "Newer" in second and "Older" in second and "Oldest" in second
    oldest = client.get(link(first, "last")).get_data(as_text=True)
    assert "Rows 71–120 of 120" in oldest
    assert link(oldest, "next") is None and link(oldest, "last") is None


def test_oldest_first_the_pager_turns_its_words_around(client, login_as, admin, two_devices):
    add_readings(two_devices, 120)
    login_as(admin)
    first = client.get(f"/admin/readings/?sort={READINGS_SORT['recorded_at']}").get_data(
        as_text=True
    )
    assert re.search(r'data-testid="page-next">\s*Newer', first)
    assert re.search(r'data-testid="page-last">\s*Newest', first)


def test_past_the_capped_count_a_page_from_the_end_counts_back(
    client, login_as, admin, two_devices, monkeypatch
):
    monkeypatch.setattr(ReadingView, "count_cap", 60)
    add_readings(two_devices, 170)
    login_as(admin)
    first = client.get("/admin/readings/").get_data(as_text=True)
    assert "List (60+)" in first and "Rows 1–50 of 60+" in first
    oldest = client.get(link(first, "last")).get_data(as_text=True)
    assert "Rows 1–50 counted back from the end, of 60+" in oldest
    newer = client.get(link(oldest, "previous")).get_data(as_text=True)
    assert "Rows 51–100 counted back from the end, of 60+" in newer


def test_a_keyed_page_reads_no_offset(app, client, login_as, admin, two_devices):
    """A page named by its key is a range on an index: no statement skips rows by OFFSET."""
    add_readings(two_devices, 300)
    login_as(admin)
    first = client.get("/admin/readings/").get_data(as_text=True)
    deep = link(client.get(link(first, "next")).get_data(as_text=True), "next")
    statements: list[tuple[str, object]] = []
    engine = _db.engine

    def seen(conn, cursor, sql, parameters, *rest):
        statements.append((sql, parameters))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert client.get(deep).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    reads = [(sql, params) for sql, params in statements if "FROM readings" in sql]
    assert reads
    for sql, params in reads:
        if "OFFSET" in sql:  # SQLite's dialect writes one always: "LIMIT ? OFFSET 0"
            assert isinstance(params, tuple) and params[-1] == 0, sql


def test_a_new_sort_filter_or_page_size_starts_at_the_first_page(
    client, login_as, admin, two_devices
):
    add_readings(two_devices, 120)
    login_as(admin)
    first = client.get("/admin/readings/").get_data(as_text=True)
    second = client.get(link(first, "next")).get_data(as_text=True)
    sort_links = re.findall(r'href="(/admin/readings/\?[^"]*sort=[^"]*)"', second)
    assert sort_links
    assert not [url for url in sort_links if "after=" in url or "before=" in url]
    hidden = re.findall(r'<input type="hidden" name="(\w+)"', second)
    assert "after" not in hidden and "before" not in hidden


def test_rows_link_back_to_the_page_they_were_on(client, login_as, admin, two_devices):
    add_readings(two_devices, 120)
    login_as(admin)
    first = client.get("/admin/readings/").get_data(as_text=True)
    older = link(first, "next")
    second = client.get(older).get_data(as_text=True)
    details = re.search(r'href="(/admin/readings/details/\?id=\d+&amp;url=[^"]+)"', second)
    assert details
    page = client.get(html_lib.unescape(details.group(1))).get_data(as_text=True)
    back = re.search(r'<a class="nav-link" href="([^"]+)">List</a>', page)
    assert back and html_lib.unescape(back.group(1)) == older


# ---- junk -------------------------------------------------------------------------------------

JUNK_KEYS = [
    ("after=abc", "default"),
    ("after=", "default"),
    ("before=", "default"),
    ("after=end", "default"),
    ("after=1:2", "default"),  # a value, although the list is sorted by id
    ("after=%00", "default"),
    ("before=-5x", "default"),
    ("after=99999999999999999999", "default"),
    ("after=1e3", "default"),
    ("after=x&page=-99999999999999999999999", "default"),
    ("sort=4&after=1", "recorded_at"),  # no value
    ("sort=4&after=1:yesterday", "recorded_at"),
    ("sort=4&before=1:2026-02-30T00:00:00", "recorded_at"),
    ("sort=4&after=1:0001-01-01T00:00:00%2B05:00", "recorded_at"),  # before the first instant
    ("sort=4&after=1:2026-01-01%00", "recorded_at"),
]


@pytest.mark.parametrize("query, sort", JUNK_KEYS)
def test_a_junk_key_is_flashed_and_the_list_starts_at_its_first_page(
    client, login_as, admin, two_devices, query, sort
):
    add_readings(two_devices, 60)
    login_as(admin)
    response = client.get(f"/admin/readings/?{query}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "does not fit this list" in page
    # The default order, or a sort by a column, which goes up.
    order = DEFAULT if sort == "default" else (sort, False)
    assert row_ids(page, "readings") == expected(Reading, *order)[:50]


@pytest.mark.parametrize(
    "view, query",
    [
        ("commands", f"sort={COMMANDS_SORT['created_at']}&after=1:sleeping"),
        ("commands", f"sort={COMMANDS_SORT['created_at']}&before=1:2026-01-01&page=-3"),
        ("audit", f"sort={AUDIT_SORT['created_at']}&after=x:2026-01-01"),
        ("audit", "before=end&page=7"),
    ],
)
def test_keys_on_the_other_lists_never_fail(client, login_as, admin, device, view, query):
    factories.CommandFactory(device=device)
    factories.AuditEventFactory()
    login_as(admin)
    assert client.get(f"/admin/{view}/?{query}").status_code == 200


def test_the_key_of_a_page_another_user_cannot_see_shows_only_their_rows(
    client, login_as, operator, two_devices
):
    """A key is a place in the order, not a row to open: a key of another operator's reading
    shows the operator's own rows that follow it."""
    device, other = two_devices
    add_readings(two_devices, 120)
    theirs = expected(Reading, "id", True, Reading.device_id == other.id)
    login_as(operator)
    by_id = f"sort={READINGS_SORT['id']}&desc=1"
    page = client.get(f"/admin/readings/?{by_id}&after={theirs[10]}").get_data(as_text=True)
    mine = expected(Reading, "id", True, Reading.device_id == device.id)
    assert row_ids(page, "readings") == [key for key in mine if key < theirs[10]][:50]


# ---- keys and orders --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "column, value",
    [
        (Reading.recorded_at, datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        (Reading.value, 0.1 + 0.2),  # exactly, not as printed to a few places
        (Reading.value, -1e-300),
        (Reading.metric, "temp:erature"),  # a colon in the value
        (Command.status, CommandStatus.delivered),
        (Command.attempts, 3),
    ],
)
def test_a_key_reads_back_as_the_row_it_was_written_from(column, value):
    text = key_text(42, value, by_id=False)
    key = list_key(text, True, column, column.class_.id)
    assert (key.id, key.value) == (42, value)


def test_a_key_of_the_id_order_is_the_id_alone():
    assert key_text(42, 42, by_id=True) == "42"
    assert list_key("42", False, Reading.id, Reading.id) == ListKey(False, 42, 42)
    assert list_key("end", False, Reading.id, Reading.id) == ListKey(False)


@pytest.mark.parametrize(
    "column, text",
    [
        (Command.status, "1:sleeping"),
        (Command.attempts, "1:99999999999"),  # beyond the column's integers
        (Reading.value, "1:NaN"),
        (Reading.metric, "1:a\x00b"),
        (AuditEvent.changes, "1:{}"),  # no order to page by
    ],
)
def test_a_value_the_column_cannot_hold_is_no_key(column, text):
    with pytest.raises(ValueError):
        list_key(text, True, column, column.class_.id)


@pytest.mark.parametrize(
    "view, model", [(ReadingView, Reading), (CommandView, Command), (AuditView, AuditEvent)]
)
def test_every_order_of_a_big_list_is_served_by_an_index(view, model):
    """A sortable column leads an index (the id: the primary key), so each page of each order
    is a range read; sorting by another column would sort the whole table for every page."""
    table = model.__table__
    leading = {index.columns[0].name for index in table.indexes} | {"id"}
    assert set(view.column_sortable_list) <= leading
