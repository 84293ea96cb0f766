"""Rules over the API: CRUD, roles and reach, validation naming each field, paging, the state
(ok, pending, alerting) and the audit trail."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import event, select

from portal.extensions import db as _db
from portal.models import Alert, AlertState, AuditEvent, Rule, utcnow
from portal.services import rules
from tests import factories
from tests.api.conftest import count

GREENHOUSE = {
    "name": "greenhouse too hot",
    "kind": "threshold",
    "metric": "temperature",
    "op": ">",
    "value": 30,
    "for_seconds": 300,
    "clear_value": 27,
    "severity": "critical",
    "on_raise": {"action": "fan.on", "payload": {"speed": 2}},
    "on_clear": {"action": "fan.off"},
}


@pytest.fixture
def as_role(request, headers_for):
    """``as_role(name)``: headers of that persona."""
    return lambda name: headers_for(request.getfixturevalue(name))


@pytest.fixture
def channel(operator):
    return factories.NotificationChannelFactory(owner=operator, name="oscar-hook")


@pytest.fixture
def other_channel(other_operator):
    return factories.NotificationChannelFactory(owner=other_operator, name="olga-hook")


@pytest.fixture
def greenhouse(device, channel):
    """The greenhouse rule's body, on the operator's device, notifying their channel."""
    return {**GREENHOUSE, "device_id": device.id, "notify": [channel.id]}


def make_rule(owner, device, name="hot", **fields):
    fields = {"kind": "threshold", "metric": "temperature", "op": ">", "value": 30, **fields}
    rule = rules.create_rule(owner, name=name, device_id=device.id, **fields)
    _db.session.commit()
    return rule


@pytest.fixture
def own_rule(operator, device):
    return make_rule(operator, device, name="oscar-rule")


@pytest.fixture
def other_rule(other_operator, other_device):
    return make_rule(other_operator, other_device, name="olga-rule")


def upload(client, device, *points):
    """Readings of ``temperature`` through the device API: ``(seconds ago, value)`` each."""
    now = utcnow()
    readings = [
        {"metric": "temperature", "value": value, "ts": (now - timedelta(seconds=ago)).isoformat()}
        for ago, value in points
    ]
    response = client.post(
        "/api/v1/device/readings",
        json={"readings": readings},
        headers={"Authorization": f"Bearer {device.token}"},
    )
    assert response.status_code == 201, response.get_json()


# ---- making one -----------------------------------------------------------------------------


def test_an_operator_creates_the_greenhouse_rule(client, device, channel, greenhouse, as_role):
    headers = as_role("operator")
    response = client.post("/api/v1/rules", json=greenhouse, headers=headers)
    assert response.status_code == 201
    made = response.get_json()
    assert {k: v for k, v in made.items() if k not in ("id", "created_at", "updated_at")} == {
        "name": "greenhouse too hot",
        "kind": "threshold",
        "device_id": device.id,
        "enabled": True,
        "severity": "critical",
        "metric": "temperature",
        "op": ">",
        "value": 30.0,
        "for_seconds": 300,
        "clear_value": 27.0,
        "seconds": None,
        "on_raise": {"action": "fan.on", "payload": {"speed": 2}, "device_id": None},
        "on_clear": {"action": "fan.off", "payload": {}, "device_id": None},
        "notify": [channel.id],
        "owner_id": device.owner_id,
        "owner": "oscar",
        "description": "temperature > 30 for 5 min, clears at 27",
        "state": "ok",
        "pending_since": None,
    }
    shown = client.get(f"/api/v1/rules/{made['id']}", headers=headers)
    assert shown.status_code == 200 and shown.get_json() == made


@pytest.mark.parametrize(
    "body,description",
    [
        ({"kind": "silence", "seconds": 3600}, "silent for 1 h"),
        ({"kind": "command_failed"}, "a command fails or expires"),
    ],
)
def test_silence_and_command_failed_rules_are_made_too(client, device, as_role, body, description):
    body = {"name": "watch", "device_id": device.id, **body}
    response = client.post("/api/v1/rules", json=body, headers=as_role("operator"))
    assert response.status_code == 201
    made = response.get_json()
    assert (made["kind"], made["description"], made["severity"], made["for_seconds"]) == (
        body["kind"],
        description,
        "warning",
        0,
    )


def test_a_command_failed_rule_may_watch_every_device_in_reach(client, as_role, operator):
    body = {"name": "any failure", "kind": "command_failed"}
    response = client.post("/api/v1/rules", json=body, headers=as_role("operator"))
    assert response.status_code == 201
    assert response.get_json()["device_id"] is None


def _bad(**fields):
    """A greenhouse body with some fields replaced (a callable: ``None`` removes the field)."""

    def make(ctx):
        body = {**GREENHOUSE, "device_id": ctx.device.id}
        for name, value in fields.items():
            value = value(ctx) if callable(value) else value
            if value is None:
                body.pop(name, None)
            else:
                body[name] = value
        return body

    return make


# Leaves out what only threshold rules have.
SILENCE_ONLY = dict.fromkeys(("metric", "op", "value", "for_seconds", "clear_value"))


@pytest.mark.parametrize(
    "make,fields",
    [
        (_bad(name="  "), {"name"}),
        (_bad(name="n" * 101), {"name"}),
        (_bad(name=None), {"name"}),
        (_bad(name=7), {"name"}),
        (_bad(name="a\x00b"), {"name"}),
        (_bad(kind="sms"), {"kind"}),
        (_bad(kind=None), {"kind"}),
        (_bad(severity="loud"), {"severity"}),
        (_bad(enabled="yes"), {"enabled"}),
        (_bad(metric="Temp!"), {"metric"}),
        (_bad(metric=None), {"metric"}),
        (_bad(op="=>"), {"op"}),
        (_bad(value="30"), {"value"}),
        (_bad(value=True), {"value"}),
        (_bad(value=None), {"value"}),
        (_bad(for_seconds=-1), {"for_seconds"}),
        (_bad(for_seconds=10**12), {"for_seconds"}),
        (_bad(for_seconds=1.5), {"for_seconds"}),
        (_bad(clear_value=31), {"clear_value"}),
        (_bad(seconds=600), {"seconds"}),
        (_bad(device_id=None), {"device_id"}),
        (_bad(device_id=0), {"device_id"}),
        (_bad(device_id=2**31), {"device_id"}),
        (_bad(device_id="1"), {"device_id"}),
        (_bad(device_id=lambda c: c.other_device.id), {"device_id"}),
        (_bad(notify=[999]), {"notify"}),
        (_bad(notify=lambda c: [c.other_channel.id]), {"notify"}),
        (_bad(notify=["1"]), {"notify.0"}),
        (_bad(notify=1), {"notify"}),
        (_bad(notify=list(range(1, 52))), {"notify"}),
        (_bad(on_raise="fan.on"), {"on_raise"}),
        (_bad(on_raise={"action": "bad action"}), {"on_raise.action"}),
        (_bad(on_raise={"payload": {}}), {"on_raise.action"}),
        (_bad(on_raise={"action": "fan.on", "payload": []}), {"on_raise.payload"}),
        (_bad(on_raise={"action": "fan.on", "colour": 1}), {"on_raise.colour"}),
        (
            _bad(on_clear=lambda c: {"action": "fan.off", "device_id": c.other_device.id}),
            {"on_clear.device_id"},
        ),
        (_bad(owner="olga"), {"owner"}),
        (_bad(colour="red"), {"colour"}),
        (
            _bad(kind="silence", seconds=600),
            {"metric", "op", "value", "for_seconds", "clear_value"},
        ),
        (_bad(kind="silence", **SILENCE_ONLY), {"seconds"}),
        (_bad(kind="silence", seconds=60, **SILENCE_ONLY), {"seconds"}),
        (_bad(kind="silence", seconds=10**8, **SILENCE_ONLY), {"seconds"}),
    ],
)
def test_a_bad_rule_is_422_naming_each_bad_field(
    client, db, device, other_device, other_channel, as_role, make, fields
):
    ctx = SimpleNamespace(device=device, other_device=other_device, other_channel=other_channel)
    response = client.post("/api/v1/rules", json=make(ctx), headers=as_role("operator"))
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert (error["code"], set(error["fields"])) == ("validation_error", fields)
    assert all(error["fields"].values())
    assert count(db, Rule) == 0


@pytest.mark.parametrize(
    "raw,field",
    [
        ('"value": NaN', "value"),
        ('"value": Infinity', "value"),
        ('"value": -Infinity', "value"),
        ('"value": 1e400', "value"),
        ('"value": 1' + "0" * 400, "value"),
        ('"value": 30, "clear_value": NaN', "clear_value"),
        (
            '"value": 30, "on_raise": {"action": "fan.on", "payload": {"x": NaN}}',
            "on_raise.payload",
        ),
        ('"value": 30, "seconds": 1' + "0" * 30, "seconds"),
    ],
)
def test_numbers_that_are_not_finite_or_too_large_are_422(client, db, device, as_role, raw, field):
    body = (
        f'{{"name": "n", "kind": "threshold", "device_id": {device.id}, '
        f'"metric": "temperature", "op": ">", {raw}}}'
    )
    response = client.post(
        "/api/v1/rules", data=body, content_type="application/json", headers=as_role("operator")
    )
    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]
    assert count(db, Rule) == 0


@pytest.mark.parametrize(
    "data,content_type,status,code",
    [
        ('{"name": "x",', "application/json", 400, "invalid_json"),
        ("", "application/json", 400, "invalid_json"),
        ("name=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ("[]", "application/json", 422, "validation_error"),
        ('"rule"', "application/json", 422, "validation_error"),
    ],
)
def test_a_malformed_body_is_a_clear_4xx(client, as_role, data, content_type, status, code):
    response = client.post(
        "/api/v1/rules", data=data, content_type=content_type, headers=as_role("operator")
    )
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code


def test_a_name_the_owner_already_uses_is_409(client, own_rule, greenhouse, as_role):
    body = {**greenhouse, "name": "oscar-rule"}
    response = client.post("/api/v1/rules", json=body, headers=as_role("operator"))
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert (error["code"], set(error["fields"])) == ("name_taken", {"name"})


def test_a_viewer_may_not_make_rules(client, db, greenhouse, as_role):
    response = client.post("/api/v1/rules", json=greenhouse, headers=as_role("viewer"))
    assert response.status_code == 403
    assert count(db, Rule) == 0


def test_an_admin_makes_a_rule_for_an_operator(client, operator, greenhouse, as_role):
    body = {**greenhouse, "owner": "oscar"}
    response = client.post("/api/v1/rules", json=body, headers=as_role("admin"))
    assert response.status_code == 201
    assert (response.get_json()["owner"], response.get_json()["owner_id"]) == ("oscar", operator.id)


def test_a_rule_acts_only_in_its_owners_reach_even_when_an_admin_makes_it(
    client, greenhouse, other_operator, as_role
):
    body = {**greenhouse, "owner": "olga"}
    response = client.post("/api/v1/rules", json=body, headers=as_role("admin"))
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"device_id", "notify"}


# ---- reach and lists --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "role,visible",
    [
        ("admin", {"oscar-rule", "olga-rule"}),
        ("viewer", {"oscar-rule", "olga-rule"}),
        ("operator", {"oscar-rule"}),
    ],
)
def test_the_list_shows_the_rules_in_reach(client, own_rule, other_rule, as_role, role, visible):
    response = client.get("/api/v1/rules", headers=as_role(role))
    assert response.status_code == 200
    assert {r["name"] for r in response.get_json()["items"]} == visible


def test_the_list_pages_with_a_cursor(client, operator, device, as_role):
    names = [make_rule(operator, device, name=f"rule {i}").name for i in range(5)]
    headers = as_role("operator")
    seen, cursor, pages = [], None, 0
    while True:
        url = "/api/v1/rules?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=headers).get_json()
        seen += [r["name"] for r in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (names, 3)


def test_the_list_filters_by_device_and_kind(client, operator, device, as_role):
    second = factories.DeviceFactory(owner=operator)
    make_rule(operator, device, name="a")
    make_rule(operator, second, name="b")
    rules.create_rule(operator, name="c", kind="silence", device_id=second.id, seconds=600)
    _db.session.commit()
    headers = as_role("operator")
    by_device = client.get(f"/api/v1/rules?device_id={second.id}", headers=headers).get_json()
    by_kind = client.get("/api/v1/rules?kind=silence", headers=headers).get_json()
    assert [r["name"] for r in by_device["items"]] == ["b", "c"]
    assert [r["name"] for r in by_kind["items"]] == ["c"]


@pytest.mark.parametrize(
    "query,field",
    [
        ("limit=501", "limit"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("cursor=%21%21", "cursor"),
        ("cursor=WzAsMV0", "cursor"),
        ("device_id=0", "device_id"),
        ("device_id=99999999999", "device_id"),
        ("kind=sms", "kind"),
    ],
)
def test_a_bad_list_query_is_422(client, as_role, query, field):
    response = client.get(f"/api/v1/rules?{query}", headers=as_role("operator"))
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {field}


def _statements_for(client, url, headers) -> int:
    seen: list[str] = []
    engine = _db.engine
    # The test shares the request's session: start each count with nothing loaded.
    _db.session.expire_all()

    def note(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        assert client.get(url, headers=headers).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return len(seen)


def test_the_list_costs_the_same_number_of_queries_for_any_number_of_rules(
    client, admin, operator, device, other_operator, other_device, as_role
):
    headers = as_role("admin")
    make_rule(operator, device, name="first")
    client.get("/api/v1/rules", headers=headers)  # the token's first use is written once
    few = _statements_for(client, "/api/v1/rules", headers)
    for i in range(4):
        rule = make_rule(other_operator, other_device, name=f"more {i}", metric=f"m{i}")
        _db.session.add(
            Alert(rule=rule, device_id=other_device.id, severity=rule.severity, value=31.0)
        )
    _db.session.commit()
    many = _statements_for(client, "/api/v1/rules", headers)
    assert many == few
    states = [r["state"] for r in client.get("/api/v1/rules", headers=headers).get_json()["items"]]
    assert states == ["ok"] + ["alerting"] * 4


@pytest.mark.parametrize(
    "method,body",
    [("get", None), ("patch", {"name": "mine now"}), ("delete", None)],
)
def test_another_operators_rule_is_404(client, db, other_rule, as_role, method, body):
    response = getattr(client, method)(
        f"/api/v1/rules/{other_rule.id}", json=body, headers=as_role("operator")
    )
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    assert db.session.get(Rule, other_rule.id).name == "olga-rule"


@pytest.mark.parametrize("method,body", [("patch", {"name": "viewed"}), ("delete", None)])
def test_a_viewer_reads_a_rule_but_changes_nothing(client, db, own_rule, as_role, method, body):
    headers = as_role("viewer")
    assert client.get(f"/api/v1/rules/{own_rule.id}", headers=headers).status_code == 200
    response = getattr(client, method)(f"/api/v1/rules/{own_rule.id}", json=body, headers=headers)
    assert response.status_code == 403
    assert db.session.get(Rule, own_rule.id).name == "oscar-rule"


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_an_absent_rule_is_404(client, as_role, method):
    response = getattr(client, method)("/api/v1/rules/999999", json={}, headers=as_role("admin"))
    assert response.status_code == 404


def test_no_credentials_is_401(client, own_rule):
    assert client.get("/api/v1/rules").status_code == 401
    assert client.get(f"/api/v1/rules/{own_rule.id}").status_code == 401


def test_an_admin_changes_any_rule(client, other_rule, as_role):
    response = client.patch(
        f"/api/v1/rules/{other_rule.id}", json={"severity": "info"}, headers=as_role("admin")
    )
    assert response.status_code == 200 and response.get_json()["severity"] == "info"


# ---- changing, deleting ----------------------------------------------------------------------


def test_patch_changes_only_the_fields_sent(client, own_rule, as_role):
    before = client.get(f"/api/v1/rules/{own_rule.id}", headers=as_role("operator")).get_json()
    response = client.patch(
        f"/api/v1/rules/{own_rule.id}",
        json={"value": 35.5, "clear_value": 32, "on_raise": {"action": "fan.on"}},
        headers=as_role("operator"),
    )
    assert response.status_code == 200
    after = response.get_json()
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {"value", "clear_value", "on_raise", "description", "updated_at"}
    assert after["description"] == "temperature > 35.5, clears at 32"
    assert after["on_raise"] == {"action": "fan.on", "payload": {}, "device_id": None}


def test_patch_with_null_removes_hysteresis_and_commands(client, operator, device, as_role):
    rule = make_rule(operator, device, clear_value=27, on_clear={"action": "fan.off"})
    response = client.patch(
        f"/api/v1/rules/{rule.id}",
        json={"clear_value": None, "on_clear": None, "notify": None},
        headers=as_role("operator"),
    )
    assert response.status_code == 200
    changed = response.get_json()
    assert (changed["clear_value"], changed["on_clear"], changed["notify"]) == (None, None, [])


@pytest.mark.parametrize(
    "body,field",
    [
        ({"kind": "silence"}, "kind"),
        ({"kind": "sms"}, "kind"),
        ({"name": None}, "name"),
        ({"name": ""}, "name"),
        ({"enabled": None}, "enabled"),
        ({"severity": None}, "severity"),
        ({"for_seconds": None}, "for_seconds"),
        ({"for_seconds": 604801}, "for_seconds"),
        ({"metric": None}, "metric"),
        ({"metric": "Temp!"}, "metric"),
        ({"value": None}, "value"),
        ({"value": "hot"}, "value"),
        ({"device_id": None}, "device_id"),
        ({"seconds": 600}, "seconds"),
        ({"clear_value": 31}, "clear_value"),
        ({"owner": "olga"}, "owner"),
        ({"notify": [999]}, "notify"),
        ({"on_raise": {"action": ""}}, "on_raise.action"),
        ({"id": 5}, "id"),
    ],
)
def test_a_bad_patch_is_422_naming_the_field(
    client, operator, device, other_operator, as_role, body, field
):
    rule = make_rule(operator, device, clear_value=27)
    response = client.patch(f"/api/v1/rules/{rule.id}", json=body, headers=as_role("operator"))
    assert response.status_code == 422, response.get_json()
    assert set(response.get_json()["error"]["fields"]) == {field}
    assert (
        client.get(f"/api/v1/rules/{rule.id}", headers=as_role("operator")).get_json()[
            "clear_value"
        ]
        == 27
    )


def test_the_rules_own_kind_may_be_sent_back(client, own_rule, as_role):
    response = client.patch(
        f"/api/v1/rules/{own_rule.id}", json={"kind": "threshold"}, headers=as_role("operator")
    )
    assert response.status_code == 200


def test_a_patch_to_a_name_in_use_is_409(client, operator, device, own_rule, as_role):
    second = make_rule(operator, device, name="second")
    response = client.patch(
        f"/api/v1/rules/{second.id}", json={"name": "oscar-rule"}, headers=as_role("operator")
    )
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "name_taken"


def test_an_admin_gives_a_rule_away_with_a_device_of_the_new_owner(
    client, own_rule, other_device, as_role
):
    response = client.patch(
        f"/api/v1/rules/{own_rule.id}",
        json={"owner": "olga", "device_id": other_device.id},
        headers=as_role("admin"),
    )
    assert response.status_code == 200
    assert (response.get_json()["owner"], response.get_json()["device_id"]) == (
        "olga",
        other_device.id,
    )


def test_a_rule_given_away_must_watch_a_device_of_the_new_owner(
    client, own_rule, other_operator, as_role
):
    response = client.patch(
        f"/api/v1/rules/{own_rule.id}", json={"owner": "olga"}, headers=as_role("admin")
    )
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"device_id"}


def test_the_state_goes_from_ok_to_pending_to_alerting(client, operator, device, as_role):
    rule = make_rule(operator, device, for_seconds=300)
    headers = as_role("operator")
    state = lambda: client.get(f"/api/v1/rules/{rule.id}", headers=headers).get_json()  # noqa: E731
    assert state()["state"] == "ok"
    upload(client, device, (400, 31))
    pending = state()
    assert (pending["state"], pending["pending_since"] is None) == ("pending", False)
    upload(client, device, (60, 32))
    assert state()["state"] == "alerting"
    listed = client.get("/api/v1/rules", headers=headers).get_json()["items"]
    assert [r["state"] for r in listed] == ["alerting"]


def test_disabling_a_rule_resolves_its_open_alert(client, db, operator, device, as_role):
    rule = make_rule(operator, device)
    upload(client, device, (10, 31))
    response = client.patch(
        f"/api/v1/rules/{rule.id}", json={"enabled": False}, headers=as_role("operator")
    )
    assert response.status_code == 200
    assert (response.get_json()["enabled"], response.get_json()["state"]) == (False, "ok")
    db.session.expire_all()
    assert [a.state for a in db.session.scalars(select(Alert))] == [AlertState.resolved]


def test_delete_takes_the_rules_alerts_along(client, db, operator, device, as_role):
    rule = make_rule(operator, device)
    upload(client, device, (10, 31))
    assert count(db, Alert) == 1
    headers = as_role("operator")
    response = client.delete(f"/api/v1/rules/{rule.id}", headers=headers)
    assert response.status_code == 204 and response.data == b""
    assert client.get(f"/api/v1/rules/{rule.id}", headers=headers).status_code == 404
    assert count(db, Alert) == 0


def test_changes_are_audited(client, db, greenhouse, as_role):
    headers = as_role("operator")
    made = client.post("/api/v1/rules", json=greenhouse, headers=headers).get_json()
    client.patch(f"/api/v1/rules/{made['id']}", json={"name": "renamed"}, headers=headers)
    client.delete(f"/api/v1/rules/{made['id']}", headers=headers)
    events = db.session.scalars(
        select(AuditEvent).where(AuditEvent.object_type == "rule").order_by(AuditEvent.id)
    ).all()
    assert [(e.action, e.actor_name, e.object_id) for e in events] == [
        ("create", "oscar", str(made["id"])),
        ("update", "oscar", str(made["id"])),
        ("delete", "oscar", str(made["id"])),
    ]
    assert events[1].changes == {"name": ["greenhouse too hot", "renamed"]}


def test_a_refused_change_leaves_no_audit_entry(client, db, own_rule, as_role):
    operator, viewer = as_role("operator"), as_role("viewer")
    before = count(db, AuditEvent)
    client.patch(f"/api/v1/rules/{own_rule.id}", json={"kind": "silence"}, headers=operator)
    client.patch(f"/api/v1/rules/{own_rule.id}", json={"name": "x"}, headers=viewer)
    assert count(db, AuditEvent) == before
