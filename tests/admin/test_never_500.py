"""Never a 500 on an admin page, whatever the query string, form or headers (SECURITY.md).

Hypothesis sends junk page numbers, sort keys, searches, filters, ids, extra keys, form fields
and headers to every page the admin registered, as each persona; the explicit cases below pin
the offenders found so far. A bad value is ignored, or answered 400 or 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from flask_admin.model import BaseModelView
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from portal.extensions import db
from portal.models import Role, User, utcnow
from portal.services import alerts, rules
from tests import factories
from tests.conftest import csrf_token, login

PERSONAS = ("admin", "operator", "viewer")
SETTINGS = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
}
LIST_EXAMPLES = 10  # per list page and persona
PAGE_EXAMPLES = 3  # per other page and persona
FORM_EXAMPLES = 4  # per form and persona
TRACEBACK = "Traceback (most recent call last)"

# ---- values --------------------------------------------------------------------------------
TRICKY_TEXT = (
    *("\x00", "%", "%%", "_", "'", '"', "\\", "\\'", "=a\\", "^", "=", "*", ";--", ","),
    *("' OR '1'='1", "%00", "\u202e", "😀", " ", " to ", "null", "None", "true"),
)
TRICKY_NUMBERS = ("1e309", "-0", "0x10", "1_000", "١٢", "²", " 7 ", "+3", "", "1,2", "NaN")
TRICKY_INSTANTS = (
    *("0001-01-01 00:00:00", "9999-12-31 23:59:59", "2024-02-30 00:00:00"),
    *("2024-13-01 00:00:00", "0000-00-00 00:00:00", "2024-01-01", "2024-01-01T00:00:00Z"),
    *("2024-01-01 00:00:00 to 2023-01-01 00:00:00", "infinity", "epoch", "now"),
    "0001-01-01 00:00:00 to 9999-12-31 23:59:59",
)
HUGE_INTEGERS = (2**31, 2**63, 2**64, -(2**63) - 1, 99_999_999_999_999_999_999)

# Surrogates cannot travel in a URL (they have no UTF-8 form); everything else may.
WORD = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
TRICKY = st.sampled_from(TRICKY_TEXT)
TEXT = st.one_of(WORD, TRICKY, st.lists(st.one_of(WORD, TRICKY), max_size=6).map("".join))
LONG = st.tuples(st.one_of(WORD.filter(bool), TRICKY), st.integers(1, 10_000)).map(
    lambda part: (part[0] * part[1])[:10_000]
)
INTEGER = st.one_of(st.integers(), st.integers(-(2**80), 2**80), st.sampled_from(HUGE_INTEGERS))
NUMBER = st.one_of(INTEGER.map(str), st.floats().map(str), st.sampled_from(TRICKY_NUMBERS))
INSTANT = st.one_of(
    st.datetimes().map(lambda at: at.isoformat(" ", "seconds")), st.sampled_from(TRICKY_INSTANTS)
)
VALUE = st.one_of(TEXT, NUMBER, INSTANT, LONG)

# Query-string keys Flask-Admin and the portal's pages read, each with its own kind of junk
# (and sometimes any other junk).
# A big list's page key (portal/admin/keyset.py): an id, or an id and a sort value.
KEY = st.one_of(
    NUMBER,
    TEXT,
    st.sampled_from(["end", "1:", ":1"]),
    st.tuples(NUMBER, st.one_of(INSTANT, NUMBER, TEXT)).map(":".join),
)
ARGS = {
    "page": NUMBER,
    "after": KEY,
    "before": KEY,
    "page_size": NUMBER,
    "sort": NUMBER,
    "desc": NUMBER,
    "search": st.one_of(TEXT, LONG),
    "id": st.one_of(NUMBER, TEXT),
    "url": st.one_of(TEXT, st.sampled_from(["//evil.example", "javascript:alert(1)"])),
    "range": TEXT,
    "ids": st.one_of(NUMBER, TEXT),
    "modal": TEXT,
    "name": TEXT,
    "query": st.one_of(TEXT, LONG),
    "offset": NUMBER,
    "limit": NUMBER,
    "next": TEXT,
}
ARG = st.sampled_from(sorted(ARGS)).flatmap(
    lambda key: st.tuples(st.just(key), st.one_of(ARGS[key], VALUE))
)
EXTRA = st.tuples(TEXT, TEXT)
FILTER_JUNK_KEYS = ("flt", "flt_", "fltx_y", "flt0_nope_equals", "flt0__", "flt-1_")

# ---- headers -------------------------------------------------------------------------------
# What a server can pass on in a header: printable Latin-1, no line breaks.
HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_categories=("Cc",)),
    max_size=200,
)
LONG_HEADER = st.tuples(HEADER_TEXT.filter(bool), st.integers(1, 8_000)).map(
    lambda part: (part[0] * part[1])[:8_000]
)
LANGUAGES = ("*", "de;q=abc", "xx-YY-zz;q=2", ";;;,,,", "en;q=0.5,de;q=NaN", "-", "q=1")
# Sent after the session cookie: junk cookies, one too long, a second "session".
COOKIES = (
    *("remember_token=junk", "remember_token=1|" + "a" * 200, "session=junk", "session="),
    *("=;=;;", "a=" + "b" * 8_000),
)
RANGES = (
    *("bytes=0-", "bytes=99999999999999999999-", "bytes=-0", "bytes=5-1", "bytes="),
    *("bytes=0-0,1-1,2-2", "lines=1-2", "bytes=-99999999999999999999"),
)
DATES = (
    *("Mon, 99 Foo 99999 99:99:99 GMT", "0", "-1", "99999999999999999999"),
    *("Sat, 01 Jan 0001 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT"),
)
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "Accept-Language": st.one_of(HEADER_TEXT, LONG_HEADER, st.sampled_from(LANGUAGES)),
        "Cookie": st.one_of(HEADER_TEXT, LONG_HEADER, st.sampled_from(COOKIES)),
        "Range": st.one_of(HEADER_TEXT, st.sampled_from(RANGES)),
        "If-Modified-Since": st.one_of(HEADER_TEXT, st.sampled_from(DATES)),
        "If-Unmodified-Since": st.one_of(HEADER_TEXT, st.sampled_from(DATES)),
        "If-None-Match": HEADER_TEXT,
        "If-Range": HEADER_TEXT,
        "Accept": HEADER_TEXT,
        "Accept-Encoding": HEADER_TEXT,
        "User-Agent": st.one_of(HEADER_TEXT, LONG_HEADER),
        "Referer": HEADER_TEXT,
        "X-Requested-With": HEADER_TEXT,
        "X-Forwarded-For": HEADER_TEXT,
    },
)


def queries(filters: list[str] | None = None):
    """Query strings: known keys with junk, filter arguments with junk, and random keys."""
    filter_key = st.one_of(st.sampled_from(FILTER_JUNK_KEYS), TEXT.map(lambda tail: "flt" + tail))
    if filters:
        numbered = st.tuples(st.integers(-1, 99), st.sampled_from(filters))
        filter_key = st.one_of(numbered.map(lambda n: f"flt{n[0]}_{n[1]}"), filter_key)
    return st.tuples(
        st.lists(ARG, max_size=6),
        st.lists(st.tuples(filter_key, VALUE), max_size=4 if filters else 1),
        st.lists(EXTRA, max_size=2),
    ).map(lambda parts: MultiDict([*parts[0], *parts[1], *parts[2]]))


def queries_after(first: dict):
    """Query strings that start with ``first`` (a row's id), then junk."""
    return queries().map(lambda junk: MultiDict([*first.items(), *junk.items(multi=True)]))


def forms(token: str, defaults: dict[str, str]):
    """Form bodies: the page's own form as a browser would send it, with junk in a few fields
    (or in fields Flask-Admin reads, or in random ones), and the session's CSRF token mostly."""
    names = [*defaults, "id", "rowid", "action", "list_form_pk", "name", "value", "url"]
    changes = st.dictionaries(st.sampled_from(names), VALUE, max_size=3)
    tokens = st.one_of(st.just(token), st.just(token), st.just(token), TEXT)
    return st.tuples(tokens, changes, st.lists(EXTRA, max_size=2)).map(
        lambda parts: MultiDict(
            [("csrf_token", parts[0]), *{**defaults, **parts[1]}.items(), *parts[2]]
        )
    )


# ---- the pages -----------------------------------------------------------------------------
def registered_views(app: Flask) -> list:
    """Every view of the admin site. Flask-Admin has no public accessor for them: if this
    attribute goes, the assert fails rather than the module silently testing nothing."""
    (admin,) = app.extensions["admin"]
    views = list(admin._views)
    assert len(views) >= 8, views
    return views


def model_views(app: Flask) -> list[BaseModelView]:
    return [view for view in registered_views(app) if isinstance(view, BaseModelView)]


def filter_args(app: Flask, view: BaseModelView) -> list[str]:
    """The URL names of the view's filters (``status_equals``), as its list page links them."""
    with app.test_request_context():
        found = view.get_filters() or []
        return [view.get_filter_arg(index, flt) for index, flt in enumerate(found)]


def admin_paths(app: Flask, method: str) -> list[str]:
    """Every path under the admin that answers ``method``, with its URL arguments filled in."""
    endpoints = {view.endpoint for view in registered_views(app)}
    values = {"export_type": "csv", "filename": static_file(app), "token_id": 1}
    with app.test_request_context():
        return sorted(
            url_for(rule.endpoint, **{key: values[key] for key in rule.arguments})
            for rule in app.url_map.iter_rules()
            if rule.endpoint.split(".")[0] in endpoints and method in rule.methods
        )


def static_file(app: Flask) -> str:
    """A file the admin serves from its static folder (for the Range and If-* headers)."""
    folder = Path(app.blueprints["admin"].static_folder)
    return min(folder.rglob("*.js")).relative_to(folder).as_posix()


def target_id(view: BaseModelView) -> int:
    """The row a form is sent about: the view's oldest (the fleet makes the operator's rows
    first); for users the newest, the fleet's spare, so that no persona edits itself away."""
    newest = view.model is User
    return db.session.execute(select((func.max if newest else func.min)(view.model.id))).scalar()


class FormFields(HTMLParser):
    """The fields of a page's forms, with the values a browser would send unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        name, kind = attrs.get("name"), attrs.get("type")
        if tag == "input" and name and kind not in ("submit", "button", "file"):
            if kind not in ("checkbox", "radio") or "checked" in attrs:
                self.fields.setdefault(name, attrs.get("value") or "")
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select:
            if self._select not in self.fields or "selected" in attrs:
                self.fields[self._select] = attrs.get("value") or ""
        elif tag == "textarea" and name:
            self._textarea = name
            self.fields[name] = ""

    def handle_endtag(self, tag) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data) -> None:
        if self._textarea:
            self.fields[self._textarea] += data


# ---- the personas --------------------------------------------------------------------------
@dataclass
class Visitor:
    """A logged-in persona; each request carries its session cookie, then any junk cookies."""

    client: FlaskClient
    session_cookie: str
    csrf: str

    def send(self, method: str, path: str, query: MultiDict, headers: dict, form=None):
        headers = dict(headers)
        headers["Cookie"] = "; ".join(filter(None, [self.session_cookie, headers.get("Cookie")]))
        return self.client.open(path, method=method, query_string=query, headers=headers, data=form)

    def form_on(self, path: str, query: dict) -> dict[str, str]:
        """The fields of the forms on the page at ``path`` (none when it answers no GET)."""
        with self.send("GET", path, MultiDict(query), {}) as response:
            parser = FormFields()
            parser.feed(response.get_data(as_text=True) if response.status_code == 200 else "")
        parser.fields.pop("csrf_token", None)
        return parser.fields


@pytest.fixture
def fleet(admin, operator, other_operator, viewer, device, other_device):
    """Rows in every table, for each operator, so every list and details page has content."""
    for d in (device, other_device):
        factories.ScheduleFactory(device=d)
        factories.CommandFactory(device=d)
        factories.ReadingFactory(device=d)
        factories.AuditEventFactory(object_id=str(d.id))
        channel = factories.NotificationChannelFactory(owner=d.owner)
        factories.NotificationAttemptFactory(
            delivery=factories.NotificationDeliveryFactory(channel=channel)
        )
        rule = rules.create_rule(
            d.owner,
            name=f"{d.name} too hot",
            kind="threshold",
            device_id=d.id,
            metric="temperature",
            op=">",
            value=30,
            on_raise={"action": "fan.on", "payload": {"speed": 2}},
            notify=[channel.id],
        )
        alerts.raise_alert(rule, d.id, 31.5, utcnow())
    db.session.commit()
    factories.PersonalTokenFactory(user=operator)
    factories.UserFactory(username="spare", role=Role.viewer)
    return device, other_device


@pytest.fixture
def visitor(app, request, fleet):
    """``visitor(persona)``: a cookie-less client that sends the persona's session itself."""

    def log_in(persona: str) -> Visitor:
        client = app.test_client()
        login(client, request.getfixturevalue(persona))
        token = csrf_token(client, "/admin/account/")  # also puts the token in the session
        cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
        return Visitor(app.test_client(use_cookies=False), f"{cookie.key}={cookie.value}", token)

    return log_in


def fuzz(visitor: Visitor, method: str, path: str, queries, examples: int, forms=None) -> None:
    """Send ``examples`` generated requests to ``path``; none may answer 500."""

    @settings(max_examples=examples, **SETTINGS)
    @given(query=queries, headers=HEADERS, form=forms if forms is not None else st.none())
    def check(query, headers, form):
        note(f"{method} {path} query={query!r} headers={headers!r} form={form!r}")
        with visitor.send(method, path, query, headers, form) as response:
            assert response.status_code < 500
            assert TRACEBACK not in response.get_data(as_text=True)  # runs an export to its end
        db.session.rollback()  # what the request left in the session must not leak

    check()


# ---- the properties ------------------------------------------------------------------------
@pytest.mark.parametrize("persona", PERSONAS)
def test_no_list_page_answers_500(app, visitor, persona):
    you = visitor(persona)
    for view in model_views(app):
        fuzz(you, "GET", view.url + "/", queries(filter_args(app, view)), LIST_EXAMPLES)


@pytest.mark.parametrize("persona", PERSONAS)
def test_no_other_admin_page_answers_500(app, visitor, persona):
    you = visitor(persona)
    lists = {view.url + "/" for view in model_views(app)}
    others = [path for path in admin_paths(app, "GET") if path not in lists]
    assert any("/details/" in p for p in others) and any("/export/" in p for p in others)
    for path in others:
        fuzz(you, "GET", path, queries(), PAGE_EXAMPLES)


@pytest.mark.parametrize("persona", PERSONAS)
def test_no_delete_confirmation_answers_500(app, visitor, persona):
    """Each view's page before a delete, about a row (the persona's or not), then junk: more
    ids make it the bulk page."""
    you = visitor(persona)
    for view in model_views(app):
        if view.supports_delete:
            query = {"id": target_id(view)}
            fuzz(you, "GET", view.url + "/delete/", queries_after(query), PAGE_EXAMPLES)


@pytest.mark.parametrize("persona", PERSONAS)
def test_no_form_answers_500(app, visitor, persona):
    """Each form is sent as its page fills it in (the admin's page: it shows every field),
    with junk in a few fields, and with the id of a row the persona may see."""
    admin = visitor("admin")
    views = {view.url + "/": view for view in model_views(app)}
    cases = []
    for path in admin_paths(app, "POST"):
        view = next((v for url, v in views.items() if path.startswith(url)), None)
        query = {"id": target_id(view)} if view else {}
        defaults = admin.form_on(path, query)
        if not defaults and view:  # a form without a page of its own sits on the details page
            defaults = admin.form_on(view.url + "/details/", query)
        cases.append((path, query, defaults))
    for path, query, defaults in cases:
        you = visitor(persona)  # afresh: a form may have ended the last session (log out)
        fuzz(you, "POST", path, queries_after(query), FORM_EXAMPLES, forms(you.csrf, defaults))


# ---- the offenders found so far, each pinned -----------------------------------------------
HUGE = "99999999999999999999"
BEYOND_INT32 = str(2**31)

LIST_CASES = [
    ("readings", f"page={HUGE}"),
    ("commands", f"page={HUGE}"),
    ("devices", f"page={HUGE}"),
    ("audit", f"page={HUGE}&page_size={HUGE}"),
    ("readings", "page=-1"),
    ("readings", f"after={HUGE}&page={HUGE}"),
    ("readings", f"before=end&page=-{HUGE}"),
    ("readings", "sort=4&after=1:0001-01-01T00:00:00%2B05:00"),
    ("commands", "sort=6&before=1:9999-12-31T23:59:59-05:00"),
    ("audit", "after=1:%00"),
    ("devices", "page=-3"),
    ("devices", "page=1.5"),
    ("devices", "page=abc"),
    ("devices", "sort=99"),
    ("devices", "sort=-1"),
    ("commands", f"sort={HUGE}&desc={HUGE}"),
    ("commands", "search=" + "a" * 10_000),
    ("devices", "search=" + "a%20" * 5_000),
    ("schedules", "search=" + "%25_%5C%27%22" * 2_000),
    ("devices", "search=" + "%20".join(f"w{n}" for n in range(1_500))),
    ("devices", "search=a%00b"),
    ("devices", "search=%3Dshe%5C"),
    ("commands", "flt0_status_equals=bogus"),
    ("commands", "flt0_source_not_equal="),
    ("commands", "flt0_status_in_list=queued,bogus"),
    ("schedules", "flt0_kind_not_in_list=%00"),
    ("users", "flt0_role_equals=Role.admin"),
    ("commands", "flt0_created_greater_than=2024-02-30+00:00:00"),
    ("commands", "flt0_created_between=2024-01-01+00:00:00+to+junk"),
    ("readings", "flt0_recorded_equals=0001-01-01+00:00:00"),
    ("readings", "flt0_recorded_smaller_than=9999-12-31+23:59:59"),
    ("readings", f"flt0_device_id_equals={HUGE}"),
    ("readings", f"flt0_device_id_in_list=1,{HUGE}"),
    ("commands", f"flt0_device_id_greater_than={BEYOND_INT32}"),
    ("commands", f"flt0_device_id_not_in_list=-{BEYOND_INT32}"),
    ("devices", "flt0_location_contains=%00"),
    ("devices", "flt0_location_contains=%3Dshe%5C"),
    ("devices", "flt0_kind_in_list=a,%00"),
    ("devices", "flt0_enabled_equals=maybe"),
    ("audit", "flt0_id_equals=%00"),
    ("tokens", "flt0_user_users_username_equals=%00"),
]


@pytest.mark.parametrize("view,query", LIST_CASES, ids=lambda value: value[:40])
def test_a_bad_list_argument_is_ignored(client, login_as, admin, fleet, view, query):
    login_as(admin)
    response = client.get(f"/admin/{view}/?{query}")
    assert response.status_code == 200
    assert TRACEBACK not in response.get_data(as_text=True)


@pytest.mark.parametrize("view", ["readings", "devices"])
def test_a_page_past_the_end_is_an_empty_page(client, login_as, admin, fleet, view):
    login_as(admin)
    for page in ("5", HUGE):
        html = client.get(f"/admin/{view}/?page={page}").get_data(as_text=True)
        assert "There are no items in the table." in html


def test_a_negative_page_is_the_first_page(client, login_as, admin, fleet):
    login_as(admin)
    assert "oscar-board" in client.get("/admin/devices/?page=-3").get_data(as_text=True)


def test_a_search_the_database_cannot_run_is_flashed_and_left_out(client, login_as, admin, fleet):
    login_as(admin)
    html = client.get("/admin/devices/?search=" + "a" * 10_000).get_data(as_text=True)
    assert "Search ignored" in html
    assert "oscar-board" in html and "olga-board" in html


def test_a_repeated_search_word_counts_once(client, login_as, admin, fleet):
    login_as(admin)
    html = client.get("/admin/devices/?search=" + "%20".join(["oscar"] * 500)).get_data(
        as_text=True
    )
    assert "Search ignored" not in html
    assert "oscar-board" in html and "olga-board" not in html


@pytest.mark.parametrize(
    "path",
    [
        f"/admin/devices/details/?id={HUGE}",
        f"/admin/commands/details/?id={BEYOND_INT32}",
        f"/admin/schedules/edit/?id=-{HUGE}",
        "/admin/schedules/edit/?id=%00",
        "/admin/tokens/details/?id=1e3",
        "/admin/devices/details/?id=%C2%B2",
    ],
)
def test_a_junk_id_is_not_found(client, login_as, admin, fleet, path):
    login_as(admin)
    assert client.get(path).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        f"/admin/readings/export/csv/?page={HUGE}&flt0_device_id_equals={HUGE}",
        "/admin/devices/export/csv/?search=%00",
        "/admin/commands/export/csv/?flt0_status_equals=bogus&sort=-7",
        "/admin/devices/ajax/lookup/?name=owner&query=%00&offset=-1&limit=" + HUGE,
    ],
)
def test_exports_and_lookups_ignore_junk(client, login_as, admin, fleet, path):
    login_as(admin)
    response = client.get(path)
    assert response.status_code < 500
    assert TRACEBACK not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "path,form",
    [
        ("/admin/tokens/new/", {"user": "USER", "label": "a\x00b"}),
        ("/admin/devices/send-command/?id=DEVICE", {"payload": '{"k\\u0000": 1}'}),
        ("/admin/devices/send-command/?id=DEVICE", {"payload": '{"k": NaN}'}),
        ("/admin/commands/new/", {"device": "DEVICE", "payload": '{"k": ["\\u0000"]}'}),
        ("/admin/devices/action/", {"action": "delete", "rowid": ["²", HUGE, BEYOND_INT32]}),
        ("/admin/devices/delete/", {"id": HUGE}),
        (
            "/admin/rules/new/",
            {"name": "r", "kind": "threshold", "device_id": HUGE, "value": "1e309"},
        ),
        ("/admin/rules/new/", {"name": "r", "kind": "nope", "notify": "x", "for_seconds": HUGE}),
        ("/admin/rules/new/", {"name": "r", "kind": "silence", "on_raise_payload": "{"}),
        ("/admin/rules/new/", {"name": "r", "kind": "threshold", "on_clear_device": "-1"}),
        (f"/admin/rules/set-enabled/?id={HUGE}", {"enabled": "1"}),
        (f"/admin/alerts/acknowledge/?id={HUGE}", {}),
        ("/admin/alerts/acknowledge/?id=%00", {}),
        ("/admin/alerts/action/", {"action": "acknowledge", "rowid": ["²", HUGE]}),
    ],
)
def test_a_junk_form_is_refused(client, login_as, admin, fleet, path, form):
    login_as(admin)
    ids = {"USER": str(admin.id), "DEVICE": str(fleet[0].id)}
    form = {"action": "relay.on", "expires_in": "60", **form}
    form = {
        name: ids.get(value, value) if isinstance(value, str) else value
        for name, value in form.items()
    }
    form["csrf_token"] = csrf_token(client, "/admin/account/")
    response = client.post(path.replace("DEVICE", ids["DEVICE"]), data=form)
    assert response.status_code < 500
    assert TRACEBACK not in response.get_data(as_text=True)


@pytest.mark.parametrize("url", ["\r", "/admin/\nSet-Cookie: x=1", "\x00"])
def test_a_return_url_with_a_control_character_is_400(client, login_as, operator, url):
    login_as(operator)
    token = csrf_token(client, "/admin/schedules/")
    response = client.post(
        "/admin/schedules/action/",
        data={"csrf_token": token, "action": "enable", "rowid": "", "url": url},
    )
    assert response.status_code == 400
    assert client.get("/admin/devices/", query_string={"url": url}).status_code == 400
