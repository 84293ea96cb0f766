"""Rules and alerts in the admin: rules made and changed through the service with its errors
beside the fields, each rule's state on the list, alerts filtered and acknowledged, open alerts
first on the dashboard, a device's alerts and rules on its page."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event, select

from portal.extensions import db as _db
from portal.models import Alert, AlertState, AuditEvent, Rule, utcnow
from portal.services import alerts, rules
from tests import factories
from tests.conftest import csrf_token

THRESHOLD = {
    "name": "too hot",
    "kind": "threshold",
    "metric": "temperature",
    "op": ">",
    "value": "30",
    "for_seconds": "60",
    "clear_value": "27",
    "severity": "critical",
    "enabled": "y",
}


def post_form(client, path, data, follow=True):
    data = {**data, "csrf_token": csrf_token(client, "/admin/account/")}
    return client.post(path, data=data, follow_redirects=follow)


def field_group(html: str, name: str) -> str:
    """The form group (label, input, errors or help) of the field ``name``."""
    for group in html.split('<div class="form-group')[1:]:
        if f'name="{name}"' in group:
            return group
    raise AssertionError(f"no field {name}")


def make_rule(owner, device, name="too hot", **fields):
    values = {"kind": "threshold", "metric": "temperature", "op": ">", "value": 30, **fields}
    rule = rules.create_rule(owner, name=name, device_id=device.id, **values)
    _db.session.commit()
    return rule


def raise_on(rule, device, value=31.5, **changes):
    alert = alerts.raise_alert(rule, device.id, value, utcnow())
    for name, new in changes.items():
        setattr(alert, name, new)
    _db.session.commit()
    return alert


@pytest.fixture
def hot(operator, device):
    return make_rule(operator, device)


@pytest.fixture
def theirs(other_operator, other_device):
    return make_rule(other_operator, other_device, name="olga rule")


# ---- the rules list ----------------------------------------------------------------------------


def test_the_list_shows_each_rules_condition_and_state(client, db, login_as, operator, device):
    calm = make_rule(operator, device, name="calm")
    waiting = make_rule(operator, device, name="waiting", for_seconds=300)
    waiting.pending_since = utcnow()
    firing = make_rule(operator, device, name="firing")
    raise_on(firing, device)
    login_as(operator)
    html = client.get("/admin/rules/").get_data(as_text=True)
    states = dict(
        re.findall(
            r'<td class="col-name">([^<]+)</td>.*?data-testid="rule-state">([^<]+)<', html, re.S
        )
    )
    assert states == {calm.name: "ok", waiting.name: "pending", firing.name: "alerting"}
    assert "temperature &gt; 30 for 5 min" in html


def test_the_list_reads_the_states_in_the_same_number_of_queries_for_more_rules(
    app, client, db, login_as, operator, device
):
    login_as(operator)

    def queries_for_list() -> int:
        seen = []
        listener = lambda *args: seen.append(1)  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            assert client.get("/admin/rules/").status_code == 200
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        return len(seen)

    raise_on(make_rule(operator, device, name="r0"), device)
    few = queries_for_list()
    for n in range(1, 6):
        raise_on(make_rule(operator, device, name=f"r{n}"), device)
    assert queries_for_list() == few


# ---- making rules through the form -------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,fields,expected",
    [
        (
            "threshold",
            THRESHOLD,
            {"metric": "temperature", "op": ">", "value": 30, "for_seconds": 60, "clear_value": 27},
        ),
        ("silence", {"name": "quiet", "kind": "silence", "seconds": "600"}, {"seconds": 600}),
        ("command_failed", {"name": "failures", "kind": "command_failed"}, {"metric": None}),
    ],
)
def test_an_operator_makes_each_kind_of_rule(
    client, db, login_as, operator, device, kind, fields, expected
):
    login_as(operator)
    response = post_form(client, "/admin/rules/new/", {**fields, "device_id": device.id})
    assert response.status_code == 200
    rule = db.session.execute(select(Rule)).scalar_one()
    assert (rule.kind.value, rule.owner_id, rule.device_id) == (kind, operator.id, device.id)
    assert {name: getattr(rule, name) for name in expected} == expected
    assert response.request.path == "/admin/rules/details/"


def test_a_threshold_rules_other_kind_fields_are_ignored(client, db, login_as, operator, device):
    """Without JavaScript the form shows every kind's fields; only the chosen kind's count."""
    login_as(operator)
    post_form(
        client,
        "/admin/rules/new/",
        {**THRESHOLD, "device_id": device.id, "seconds": "600"},
    )
    assert db.session.execute(select(Rule.seconds)).scalar_one() is None


def test_a_command_failed_rule_may_watch_every_device_in_reach(client, db, login_as, operator):
    login_as(operator)
    post_form(client, "/admin/rules/new/", {"name": "all", "kind": "command_failed"})
    rule = db.session.execute(select(Rule)).scalar_one()
    assert rule.device_id is None


def test_the_commands_and_channels_are_saved(client, db, login_as, operator, device):
    channel = factories.NotificationChannelFactory(owner=operator, name="ops hook")
    login_as(operator)
    post_form(
        client,
        "/admin/rules/new/",
        {
            **THRESHOLD,
            "device_id": device.id,
            "on_raise_action": "fan.on",
            "on_raise_payload": '{"speed": 2}',
            "on_clear_action": "fan.off",
            "on_clear_device": device.id,
            "notify": channel.id,
        },
    )
    rule = db.session.execute(select(Rule)).scalar_one()
    assert rule.on_raise == {"action": "fan.on", "payload": {"speed": 2}, "device_id": None}
    assert rule.on_clear == {"action": "fan.off", "payload": {}, "device_id": device.id}
    assert rule.notify == [channel.id]


@pytest.mark.parametrize(
    "changes,field,message",
    [
        ({"metric": "Temp eratur"}, "metric", "1-64 characters"),
        ({"value": ""}, "value", "A number."),
        ({"value": "inf"}, "value", "A finite number."),
        ({"clear_value": "35"}, "clear_value", "the clear value must be at most 30"),
        ({"for_seconds": "-5"}, "for_seconds", "Whole seconds from 0"),
        ({"device_id": ""}, "device_id", "A device is required."),
        ({"kind": "silence", "seconds": "10"}, "seconds", "Whole seconds from 120"),
        ({"kind": "silence", "seconds": ""}, "seconds", "Whole seconds from 120"),
        ({"on_raise_action": "fan on!"}, "on_raise_action", "1-64 characters"),
        ({"on_clear_payload": "[1, 2]"}, "on_clear_payload", "A JSON object is expected"),
        ({"on_raise_payload": '{"a": 1}'}, "on_raise_action", "1-64 characters"),
        ({"value": "warm"}, "value", "Not a valid float value."),
    ],
)
def test_a_bad_field_is_shown_beside_it_and_nothing_is_saved(
    client, db, login_as, operator, device, changes, field, message
):
    login_as(operator)
    response = post_form(
        client, "/admin/rules/new/", {**THRESHOLD, "device_id": device.id, **changes}
    )
    assert response.status_code == 200
    group = field_group(response.get_data(as_text=True), field)
    assert "invalid-feedback" in group and message in group
    assert db.session.execute(select(Rule)).first() is None


def test_a_name_taken_is_shown_beside_the_name(client, db, login_as, operator, device, hot):
    login_as(operator)
    response = post_form(client, "/admin/rules/new/", {**THRESHOLD, "device_id": device.id})
    assert "This name is taken." in field_group(response.get_data(as_text=True), "name")
    assert len(db.session.execute(select(Rule)).all()) == 1


def test_another_operators_device_cannot_be_chosen(client, db, login_as, operator, other_device):
    login_as(operator)
    form = client.get("/admin/rules/new/").get_data(as_text=True)
    assert "olga-board" not in form
    response = post_form(client, "/admin/rules/new/", {**THRESHOLD, "device_id": other_device.id})
    assert "invalid-feedback" in field_group(response.get_data(as_text=True), "device_id")
    assert db.session.execute(select(Rule)).first() is None


def test_the_edit_form_has_only_the_rules_kind_and_saves_changes(
    client, db, login_as, operator, device
):
    rule = make_rule(operator, device, on_raise={"action": "fan.on", "payload": {"speed": 2}})
    login_as(operator)
    form = client.get(f"/admin/rules/edit/?id={rule.id}").get_data(as_text=True)
    assert 'name="kind"' not in form and 'name="seconds"' not in form
    assert 'name="metric"' in form and "fan.on" in form and "speed" in form
    post_form(
        client,
        f"/admin/rules/edit/?id={rule.id}",
        {**THRESHOLD, "device_id": device.id, "value": "35", "on_raise_action": "fan.on"},
    )
    db.session.expire_all()
    changed = db.session.get(Rule, rule.id)
    assert (changed.value, changed.clear_value) == (35, 27)
    assert changed.on_raise == {"action": "fan.on", "payload": {}, "device_id": None}
    event_ = db.session.scalars(
        select(AuditEvent).where(AuditEvent.object_type == "rule").order_by(AuditEvent.id.desc())
    ).first()
    assert (event_.action, event_.via) == ("update", "admin")


def test_an_admin_makes_a_rule_for_an_operator(client, db, login_as, admin, operator, device):
    login_as(admin)
    post_form(
        client, "/admin/rules/new/", {**THRESHOLD, "device_id": device.id, "owner": operator.id}
    )
    assert db.session.execute(select(Rule.owner_id)).scalar_one() == operator.id


# ---- reach ---------------------------------------------------------------------------------


def test_an_operator_lists_only_their_own_rules(client, login_as, operator, hot, theirs):
    login_as(operator)
    html = client.get("/admin/rules/").get_data(as_text=True)
    assert "too hot" in html and "olga rule" not in html


@pytest.mark.parametrize("page", ["details", "edit"])
def test_another_operators_rule_is_404(client, login_as, operator, theirs, page):
    login_as(operator)
    assert client.get(f"/admin/rules/{page}/?id={theirs.id}").status_code == 404


def test_another_operators_rule_cannot_be_disabled(client, db, login_as, operator, theirs):
    login_as(operator)
    response = post_form(
        client, f"/admin/rules/set-enabled/?id={theirs.id}", {"enabled": "0"}, follow=False
    )
    assert response.status_code == 404
    db.session.expire_all()
    assert db.session.get(Rule, theirs.id).enabled


def test_a_viewer_reads_rules_but_may_not_make_or_change_them(
    client, db, login_as, viewer, hot, device
):
    login_as(viewer)
    html = client.get("/admin/rules/").get_data(as_text=True)
    assert "too hot" in html and "/admin/rules/new/" not in html
    assert client.get("/admin/rules/new/").status_code == 403
    assert client.get(f"/admin/rules/edit/?id={hot.id}").status_code == 403
    response = post_form(
        client, "/admin/rules/new/", {**THRESHOLD, "name": "mine", "device_id": device.id}
    )
    assert response.status_code == 403
    response = post_form(
        client, f"/admin/rules/set-enabled/?id={hot.id}", {"enabled": "0"}, follow=False
    )
    assert response.status_code == 403
    assert [r.name for r in db.session.scalars(select(Rule))] == ["too hot"]


def test_disabling_a_rule_resolves_its_open_alert(client, db, login_as, operator, device, hot):
    alert = raise_on(hot, device)
    login_as(operator)
    response = post_form(
        client, "/admin/rules/action/", {"action": "disable", "rowid": str(hot.id)}
    )
    assert "1 rule(s) disabled." in response.get_data(as_text=True)
    db.session.expire_all()
    assert not db.session.get(Rule, hot.id).enabled
    assert db.session.get(Alert, alert.id).state is AlertState.resolved


def test_the_rule_page_shows_its_alerts(client, login_as, operator, device, hot):
    alert = raise_on(hot, device)
    login_as(operator)
    html = client.get(f"/admin/rules/details/?id={hot.id}").get_data(as_text=True)
    table = html.split('data-testid="rule-alerts"', 1)[1].split("</table>", 1)[0]
    assert f"/admin/alerts/details/?id={alert.id}" in table


# ---- alerts ------------------------------------------------------------------------------------


@pytest.fixture
def three_alerts(operator, device, hot):
    """A resolved, an acknowledged and an active alert of three rules on the device."""
    old = raise_on(make_rule(operator, device, name="old"), device, value=40)
    alerts.resolve(old, utcnow())
    seen = raise_on(make_rule(operator, device, name="seen"), device, value=41)
    alerts.acknowledge(operator, seen)
    new = raise_on(hot, device, value=42)
    _db.session.commit()
    return old, seen, new


def alert_ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'name="rowid" class="action-checkbox" value="(\d+)"', html)]


def test_the_alerts_list_is_newest_first(client, login_as, operator, three_alerts):
    login_as(operator)
    html = client.get("/admin/alerts/").get_data(as_text=True)
    assert alert_ids(html) == [a.id for a in reversed(three_alerts)]


def test_the_open_tab_lists_only_open_alerts(client, login_as, operator, three_alerts):
    old, seen, new = three_alerts
    login_as(operator)
    index = client.get("/admin/alerts/").get_data(as_text=True)
    assert 'data-testid="open-count">2<' in index
    href = re.search(r'href="([^"]+)" data-testid="open-alerts-tab"', index).group(1)
    html = client.get(href.replace("&amp;", "&")).get_data(as_text=True)
    assert alert_ids(html) == [new.id, seen.id]


@pytest.mark.parametrize("state", ["active", "acknowledged", "resolved"])
def test_the_state_filter_lists_that_state(client, login_as, operator, three_alerts, state):
    login_as(operator)
    html = client.get(f"/admin/alerts/?flt0_state_equals={state}").get_data(as_text=True)
    wanted = [a.id for a in reversed(three_alerts) if a.state.value == state]
    assert alert_ids(html) == wanted


def test_an_operator_sees_only_alerts_on_their_devices(
    client, login_as, operator, hot, device, theirs, other_device
):
    mine, other = raise_on(hot, device), raise_on(theirs, other_device)
    login_as(operator)
    assert alert_ids(client.get("/admin/alerts/").get_data(as_text=True)) == [mine.id]
    assert client.get(f"/admin/alerts/details/?id={other.id}").status_code == 404


def test_acknowledging_from_the_list_calls_the_service(client, db, login_as, operator, device, hot):
    alert = raise_on(hot, device)
    login_as(operator)
    html = client.get("/admin/alerts/").get_data(as_text=True)
    assert f"/admin/alerts/acknowledge/?id={alert.id}" in html
    response = post_form(client, f"/admin/alerts/acknowledge/?id={alert.id}&url=/admin/alerts/", {})
    assert f"Alert {alert.id} acknowledged." in response.get_data(as_text=True)
    db.session.expire_all()
    acknowledged = db.session.get(Alert, alert.id)
    assert (acknowledged.state, acknowledged.acknowledged_by_id) == (
        AlertState.acknowledged,
        operator.id,
    )
    assert db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.object_type == "alert")
    ).all() == ["raise", "acknowledge"]


def test_acknowledging_without_the_csrf_token_is_refused(
    client, db, login_as, operator, device, hot
):
    alert = raise_on(hot, device)
    login_as(operator)
    response = client.post(f"/admin/alerts/acknowledge/?id={alert.id}")
    assert response.status_code == 400
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).state is AlertState.active


def test_acknowledging_many_at_once(client, db, login_as, operator, device, hot):
    first = raise_on(hot, device)
    second = raise_on(make_rule(operator, device, name="other"), device)
    login_as(operator)
    response = post_form(
        client,
        "/admin/alerts/action/",
        {"action": "acknowledge", "rowid": [str(first.id), str(second.id)]},
    )
    assert "2 alert(s) acknowledged." in response.get_data(as_text=True)
    states = db.session.scalars(select(Alert.state)).all()
    assert states == [AlertState.acknowledged] * 2


def test_acknowledging_a_resolved_alert_is_explained(client, db, login_as, operator, device, hot):
    alert = raise_on(hot, device)
    alerts.resolve(alert, utcnow())
    db.session.commit()
    login_as(operator)
    response = post_form(client, f"/admin/alerts/acknowledge/?id={alert.id}", {})
    assert response.status_code == 200
    assert "already resolved" in response.get_data(as_text=True)


def test_a_viewer_may_not_acknowledge(client, db, login_as, viewer, device, hot):
    alert = raise_on(hot, device)
    login_as(viewer)
    assert "/admin/alerts/acknowledge/" not in client.get("/admin/alerts/").get_data(as_text=True)
    response = post_form(client, f"/admin/alerts/acknowledge/?id={alert.id}", {}, follow=False)
    assert response.status_code == 403
    assert db.session.get(Alert, alert.id).state is AlertState.active


def test_another_operators_alert_cannot_be_acknowledged(
    client, db, login_as, operator, theirs, other_device
):
    alert = raise_on(theirs, other_device)
    login_as(operator)
    response = post_form(client, f"/admin/alerts/acknowledge/?id={alert.id}", {}, follow=False)
    assert response.status_code == 404
    assert db.session.get(Alert, alert.id).state is AlertState.active


def test_alerts_cannot_be_made_or_changed_by_hand(client, login_as, admin, device, hot):
    alert = raise_on(hot, device)
    login_as(admin)
    assert client.get("/admin/alerts/new/").status_code == 403
    assert client.get(f"/admin/alerts/edit/?id={alert.id}").status_code == 403


def test_the_alert_page_shows_its_rule_commands_and_notifications(
    client, db, login_as, operator, device
):
    channel = factories.NotificationChannelFactory(owner=operator, name="ops hook")
    rule = make_rule(
        operator,
        device,
        clear_value=27,
        on_raise={"action": "fan.on"},
        on_clear={"action": "fan.off"},
        notify=[channel.id],
    )
    alert = raise_on(rule, device)
    alerts.resolve(alert, utcnow())
    db.session.commit()
    login_as(operator)
    html = client.get(f"/admin/alerts/details/?id={alert.id}").get_data(as_text=True)
    assert f"/admin/rules/details/?id={rule.id}" in html
    assert "temperature &gt; 30, clears at 27" in html
    commands = html.split('data-testid="alert-commands"', 1)[1].split("</table>", 1)[0]
    assert "fan.on" in commands and "fan.off" in commands
    deliveries = html.split('data-testid="alert-deliveries"', 1)[1].split("</table>", 1)[0]
    assert "alert.raised" in deliveries and "alert.resolved" in deliveries


# ---- the dashboard and the device page ---------------------------------------------------------


def test_the_dashboard_shows_open_alerts_first(client, login_as, operator, device, hot):
    alert = raise_on(hot, device)
    login_as(operator)
    html = client.get("/admin/").get_data(as_text=True)
    body = html.split("<h1", 1)[1]
    assert re.search(r'data-testid="([^"]+)"', body).group(1) == "open-alerts"
    section = body.split('data-testid="open-alerts"', 1)[1].split("</table>", 1)[0]
    assert "too hot" in section and "oscar-board" in section and "31.5" in section
    assert f"/admin/alerts/acknowledge/?id={alert.id}" in section


def test_the_dashboard_says_when_no_alert_is_open(client, login_as, operator, device, hot):
    login_as(operator)
    assert 'data-testid="no-open-alerts"' in client.get("/admin/").get_data(as_text=True)


def test_the_dashboard_offers_no_acknowledge_to_a_viewer(client, login_as, viewer, device, hot):
    raise_on(hot, device)
    login_as(viewer)
    html = client.get("/admin/").get_data(as_text=True)
    assert "too hot" in html and "/admin/alerts/acknowledge/" not in html


def test_acknowledging_from_the_dashboard_returns_to_it(
    client, db, login_as, operator, device, hot
):
    alert = raise_on(hot, device)
    login_as(operator)
    html = client.get("/admin/").get_data(as_text=True)
    action = re.search(r'action="(/admin/alerts/acknowledge/[^"]+)"', html).group(1)
    response = post_form(client, action.replace("&amp;", "&"), {}, follow=False)
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/")
    assert db.session.get(Alert, alert.id).state is AlertState.acknowledged


def test_the_device_page_shows_its_alerts_open_first_and_its_rules(
    client, login_as, operator, device, three_alerts
):
    old, seen, new = three_alerts
    login_as(operator)
    html = client.get(f"/admin/devices/details/?id={device.id}").get_data(as_text=True)
    table = html.split('data-testid="device-alerts"', 1)[1].split("</table>", 1)[0]
    assert [int(n) for n in re.findall(r'data-alert-id="(\d+)"', table)] == [
        new.id,
        seen.id,
        old.id,
    ]
    rules_table = html.split('data-testid="device-rules"', 1)[1].split("</table>", 1)[0]
    assert {"too hot", "old", "seen"} <= set(re.findall(r'id=\d+">([^<]+)</a>', rules_table))


def test_the_device_page_shows_only_the_last_ten_resolved_alerts(
    client, db, login_as, operator, device, hot
):
    resolved = []
    for _ in range(11):
        alert = raise_on(hot, device)
        alerts.resolve(alert, utcnow())
        resolved.append(alert.id)
    db.session.commit()
    login_as(operator)
    html = client.get(f"/admin/devices/details/?id={device.id}").get_data(as_text=True)
    table = html.split('data-testid="device-alerts"', 1)[1].split("</table>", 1)[0]
    shown = [int(n) for n in re.findall(r'data-alert-id="(\d+)"', table)]
    assert shown == resolved[::-1][:10]


@pytest.mark.parametrize(
    "language,words",
    [
        ("de-DE,de;q=0.9", ["Regeln", "Schwellwert: ein Messwert", "Befehl bei Auslösung"]),
        ("fr-CH,fr;q=0.9", ["Règles", "Seuil\u00a0: une mesure", "Commande au déclenchement"]),
    ],
)
def test_the_rule_form_speaks_the_browsers_language(
    app, client, login_as, operator, device, language, words
):
    from flask_babel import refresh

    app.before_request(refresh)
    login_as(operator)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    html = client.get("/admin/rules/new/").get_data(as_text=True)
    for word in words:
        assert word in html, word
