"""Alerts: judging readings, silence and failed commands against the rules; raising,
acknowledging and resolving alerts, with their commands and notifications.

Where each kind is judged:

* ``threshold`` in the transaction that stores readings (``judge_readings``: HTTP uploads and
  the MQTT bridge alike), the whole batch in one step. The enabled threshold rules of the
  batch's devices and metrics are found with one indexed query (nothing else happens when
  there are none); each rule walks its readings in reading-time (``ts``) order. A rule whose
  condition must hold ``for_seconds`` remembers since when it has held (``pending_since``);
  the alert is raised by the reading that completes the duration, or by the scheduler pass
  (``check_due``) once the duration has passed with no reading breaking it.
* ``silence`` by the scheduler pass: nothing heard from the device (``last_seen_at``, any API
  or MQTT traffic; the device's creation if never) for ``seconds`` raises; being heard from
  after the alert was raised resolves it.
* ``command_failed`` where a command ends ``failed`` or ``expired`` (a device's result, a poll,
  the pass's expiry: ``commands_ended``). Only a person resolves it, by acknowledging it.

One open alert per rule and device (a partial unique index says so too); while it is open the
rule does not raise again. Raising and resolving queue the rule's ``on_raise`` / ``on_clear``
command (an INSERT in the same transaction: never a wait on the device) and its notifications
(the outbox, ``notifications.notify``), and write an audit entry, in the caller's transaction.
On PostgreSQL the rules judged are locked (``FOR UPDATE``) for the transaction, so two
transactions never judge one rule at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVarTuple, cast

from sqlalchemy import CursorResult, Select, and_, bindparam, case, func, select, update

from portal.extensions import db
from portal.models import (
    Alert,
    AlertState,
    Command,
    CommandSource,
    CommandStatus,
    Device,
    Role,
    Rule,
    RuleKind,
    Severity,
    User,
    utcnow,
)
from portal.services import audit, notifications
from portal.services.access import check_change, may_change_device, may_see_device, scope
from portal.services.errors import Conflict, NotFound
from portal.services.wakeup import wake_bridge

Ts = TypeVarTuple("Ts")
OPEN = (AlertState.active, AlertState.acknowledged)
# How long a rule's command may wait for its device.
COMMAND_TTL_SECONDS = 3600

_rules = Rule.__table__
_alerts = Alert.__table__
# Ingest's one question, prebuilt: the enabled threshold rules on these devices and metrics,
# with what judging needs (plain rows, not ORM objects: an upload to a device with rules pays
# for every object it builds), and their open alerts.
_JUDGED = (
    _rules.c.id,
    _rules.c.device_id,
    _rules.c.metric,
    _rules.c.op,
    _rules.c.value,
    _rules.c.for_seconds,
    _rules.c.clear_value,
    _rules.c.pending_since,
    _rules.c.pending_value,
    _rules.c.judged_until,
)
# Each rule comes with its open alert's id (at most one: the partial unique index, which also
# serves the join).
_WITH_OPEN_ALERT = _rules.outerjoin(
    _alerts,
    and_(
        _alerts.c.rule_id == _rules.c.id,
        _alerts.c.device_id == _rules.c.device_id,
        _alerts.c.state != AlertState.resolved.value,
    ),
)
_THRESHOLD = (
    select(*_JUDGED, _alerts.c.id.label("alert_id"))
    .select_from(_WITH_OPEN_ALERT)
    .where(_rules.c.kind == RuleKind.threshold.value, _rules.c.enabled.is_(True))
    .order_by(_rules.c.id)
)
# One device (an HTTP upload): no expanding IN, so the statement's SQL is cached whole.
_DEVICE_RULES = _THRESHOLD.where(_rules.c.device_id == bindparam("device"))
_DEVICES_RULES = _THRESHOLD.where(_rules.c.device_id.in_(bindparam("devices", expanding=True)))
_LOCKED = {
    statement: statement.with_for_update(of=_rules) for statement in (_DEVICE_RULES, _DEVICES_RULES)
}
# The same question for one device as plain SQL on the driver's cursor: every HTTP upload asks
# it, and SQLAlchemy's execution machinery costs ten times the query itself.
_DEVICE_RULES_SQL = (
    "SELECT r.id, r.device_id, r.metric, r.op, r.value, r.for_seconds, r.clear_value,"
    " r.pending_since, r.pending_value, r.judged_until, a.id"
    " FROM rules r LEFT OUTER JOIN alerts a"
    " ON a.rule_id = r.id AND a.device_id = r.device_id AND a.state != 'resolved'"
    " WHERE r.kind = 'threshold' AND r.enabled = {true} AND r.device_id = {param}"
    " ORDER BY r.id"
)
_DRIVER_SQL = {
    "sqlite": _DEVICE_RULES_SQL.format(true="1", param="?"),
    "postgresql": _DEVICE_RULES_SQL.format(true="true", param="%s") + " FOR UPDATE OF r",
}
_OPEN_ALERTS = select(Alert).where(
    Alert.rule_id.in_(bindparam("ids", expanding=True)), Alert.state.in_(OPEN)
)
_SAVE_STATE = (
    update(_rules)
    .where(_rules.c.id == bindparam("rule_id"))
    .values(
        pending_since=bindparam("new_pending_since"),
        pending_value=bindparam("new_pending_value"),
        judged_until=bindparam("new_judged_until"),
    )
)


@dataclass(slots=True)
class _Judged:
    """A threshold rule as ingest judges it; ``dirty`` once its state changed."""

    id: int
    device_id: int
    metric: str
    op: str
    value: float
    for_seconds: int
    clear_value: float | None
    pending_since: datetime | None
    pending_value: float | None
    judged_until: datetime | None
    alert_id: int | None
    dirty: bool = False


def holds(op: str | None, reading: float, value: float | None) -> bool:
    """Whether ``reading op value`` is true."""
    if value is None:
        return False
    if op == ">":
        return reading > value
    if op == ">=":
        return reading >= value
    if op == "<":
        return reading < value
    if op == "<=":
        return reading <= value
    return False


def clears(rule: Rule | _Judged, reading: float) -> bool:
    """Whether a reading clears the rule's open alert: it no longer satisfies the condition
    (with ``clear_value``: no longer satisfies it against ``clear_value``)."""
    limit = rule.clear_value if rule.clear_value is not None else rule.value
    return not holds(rule.op, reading, limit)


def _locked(query: Select[*Ts]) -> Select[*Ts]:
    """The query, locking the rules it reads on PostgreSQL (for this transaction)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(of=Rule)
    return query


def _open_alerts(rule_ids: Iterable[int]) -> dict[tuple[int, int], Alert]:
    ids = list(rule_ids)
    if not ids:
        return {}
    found = db.session.execute(_OPEN_ALERTS, {"ids": ids}).scalars()
    return {(alert.rule_id, alert.device_id): alert for alert in found}


# ---- threshold: in the ingest transaction ---------------------------------------------------


def judge_readings(rows: Sequence[tuple[int, str, float, datetime]], now: datetime) -> int:
    """Judge stored readings, ``(device_id, metric, value, recorded_at)`` each, against the
    enabled threshold rules on their devices and metrics; return how many alerts changed."""
    if not rows:
        return 0
    found = _threshold_rules(_DEVICES_RULES, {"devices": list({row[0] for row in rows})})
    metrics = {(row[0], row[1]) for row in rows}
    found = [rule for rule in found if (rule.device_id, rule.metric) in metrics]
    return _judge(rows, now, found) if found else 0


def judge_device_readings(
    device_id: int, rows: Sequence[tuple[str, float, datetime]], now: datetime
) -> int:
    """``judge_readings`` for one device's batch, ``(metric, value, recorded_at)`` each: the
    common case (no rule on the device) costs one indexed query and no copy of the batch."""
    if not rows:
        return 0
    found = _device_rules(device_id)
    if found:
        metrics = {row[0] for row in rows}
        found = [rule for rule in found if rule.metric in metrics]
    return _judge([(device_id, *row) for row in rows], now, found) if found else 0


def _device_rules(device_id: int) -> list[_Judged]:
    """``_threshold_rules`` for one device, on the driver's cursor where the SQL is known."""
    connection = db.session.connection()
    sql = _DRIVER_SQL.get(connection.dialect.name)
    if sql is None:
        return _threshold_rules(_DEVICE_RULES, {"device": device_id})
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql, (device_id,))
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return [
        _Judged(
            r[0], r[1], r[2], r[3], r[4], r[5], r[6], _instant(r[7]), r[8], _instant(r[9]), r[10]
        )
        for r in rows
    ]


def _instant(value: Any) -> datetime | None:
    """A stored instant as an aware UTC datetime (SQLite's driver gives the text stored)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return cast(datetime | None, value)


def _threshold_rules(statement: Select[Any], params: dict[str, Any]) -> list[_Judged]:
    """The enabled threshold rules the statement finds, with their open alerts' ids; locked
    on PostgreSQL until the transaction ends (two uploads never judge one rule at once)."""
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        statement = _LOCKED[statement]
    return [_Judged(*row) for row in connection.execute(statement, params)]


def _judge(
    rows: Sequence[tuple[int, str, float, datetime]], now: datetime, rules: list[_Judged]
) -> int:
    series: dict[tuple[int, str], list[tuple[datetime, float]]] = defaultdict(list)
    for device_id, metric, value, at in rows:
        series[(device_id, metric)].append((at, value))
    changed = 0
    for rule in rules:
        readings = sorted(series[(rule.device_id, rule.metric)], key=lambda r: r[0])
        changed += _walk(rule, readings, now)
    dirty = [
        {
            "rule_id": rule.id,
            "new_pending_since": rule.pending_since,
            "new_pending_value": rule.pending_value,
            "new_judged_until": rule.judged_until,
        }
        for rule in rules
        if rule.dirty
    ]
    if dirty:
        db.session.connection().execute(_SAVE_STATE, dirty)
    return changed


def _walk(rule: _Judged, readings: list[tuple[datetime, float]], now: datetime) -> int:
    """Judge one rule's readings in time order. Only a change of state is written, and only a
    raise or a resolve loads ORM objects."""
    changed, alert_id = 0, rule.alert_id
    for at, value in readings:
        if rule.judged_until is not None and at < rule.judged_until:
            continue  # older than the rule's last change of state: history, not news
        if alert_id is not None:
            if clears(rule, value):
                changed += resolve(db.session.get_one(Alert, alert_id), now)
                alert_id, rule.judged_until, rule.dirty = None, at, True
        elif holds(rule.op, value, rule.value):
            if rule.pending_since is None:
                rule.pending_since, rule.pending_value, rule.judged_until = at, value, at
                rule.dirty = True
            if (at - rule.pending_since).total_seconds() >= rule.for_seconds:
                alert = raise_alert(db.session.get_one(Rule, rule.id), rule.device_id, value, now)
                alert_id = alert.id if alert is not None else None
                rule.pending_since = rule.pending_value = None
                rule.judged_until, rule.dirty = at, True
                changed += alert is not None
        elif rule.pending_since is not None:
            rule.pending_since = rule.pending_value = None
            rule.judged_until, rule.dirty = at, True
    return changed


# ---- durations and silence: in the scheduler pass -------------------------------------------


def check_due(now: datetime | None = None) -> int:
    """The scheduler pass's part: raise threshold alerts whose duration has passed unbroken,
    raise and resolve silence alerts. Returns how many alerts changed; the caller commits."""
    now = now or utcnow()
    return _check_durations(now) + _check_silence(now)


def _check_durations(now: datetime) -> int:
    rules = list(
        db.session.execute(
            _locked(
                select(Rule)
                .where(
                    Rule.kind == RuleKind.threshold,
                    Rule.enabled.is_(True),
                    Rule.pending_since.is_not(None),
                    Rule.pending_since <= now,
                )
                .order_by(Rule.id)
            )
        ).scalars()
    )
    due = [
        rule
        for rule in rules
        if rule.pending_since is not None
        and rule.pending_since + timedelta(seconds=rule.for_seconds) <= now
    ]
    open_alerts = _open_alerts(rule.id for rule in due)
    changed = 0
    for rule in due:
        device_id = cast(int, rule.device_id)
        since = cast(datetime, rule.pending_since)
        if (rule.id, device_id) not in open_alerts:
            changed += raise_alert(rule, device_id, rule.pending_value, now) is not None
        rule.pending_since = rule.pending_value = None
        rule.judged_until = since + timedelta(seconds=rule.for_seconds)
    return changed


def _check_silence(now: datetime) -> int:
    rows = db.session.execute(
        _locked(
            select(Rule, Device.last_seen_at, Device.created_at)
            .join(Device, Device.id == Rule.device_id)
            .where(Rule.kind == RuleKind.silence, Rule.enabled.is_(True))
            .order_by(Rule.id)
        )
    ).all()
    open_alerts = _open_alerts(row[0].id for row in rows)
    changed = 0
    for rule, last_seen_at, created_at in rows:
        device_id = cast(int, rule.device_id)
        alert = open_alerts.get((rule.id, device_id))
        heard = last_seen_at or created_at
        if alert is not None:
            if last_seen_at is not None and last_seen_at > alert.raised_at:
                changed += resolve(alert, now)
        elif (now - heard).total_seconds() >= (rule.seconds or 0):
            silent = round((now - heard).total_seconds())
            changed += raise_alert(rule, device_id, float(silent), now) is not None
    return changed


# ---- command_failed: where commands end -----------------------------------------------------


def commands_ended(ended: Sequence[tuple[int, int]], now: datetime) -> int:
    """Commands that ended ``failed`` or ``expired``, ``(command_id, device_id)`` each: raise
    the enabled command_failed rules that watch their devices (a rule without a device watches
    every device its owner may change). Returns how many alerts were raised."""
    if not ended:
        return 0
    device_ids = {device_id for _, device_id in ended}
    rules = list(
        db.session.execute(
            _locked(
                select(Rule)
                .where(
                    Rule.kind == RuleKind.command_failed,
                    Rule.enabled.is_(True),
                    (Rule.device_id.in_(device_ids)) | Rule.device_id.is_(None),
                )
                .order_by(Rule.id)
            )
        ).scalars()
    )
    if not rules:
        return 0
    owners = dict(
        db.session.execute(
            select(Device.id, Device.owner_id).where(Device.id.in_(device_ids))
        ).all()
    )
    open_alerts = _open_alerts(rule.id for rule in rules)
    raised = 0
    for command_id, device_id in sorted(ended):
        for rule in rules:
            if rule.device_id is None:
                owner = rule.owner
                if owner.role is not Role.admin and owners.get(device_id) != owner.id:
                    continue
            elif rule.device_id != device_id:
                continue
            if (rule.id, device_id) in open_alerts:
                continue
            alert = raise_alert(rule, device_id, float(command_id), now)
            if alert is not None:
                open_alerts[(rule.id, device_id)] = alert
                raised += 1
    return raised


# ---- raising, acknowledging, resolving ------------------------------------------------------


def raise_alert(rule: Rule, device_id: int, value: float | None, now: datetime) -> Alert | None:
    """Open an alert for the rule and device, queue ``on_raise`` and the notifications, audit.

    Returns None (and does nothing) when one is already open.
    """
    if db.session.execute(
        select(Alert.id).where(
            Alert.rule_id == rule.id, Alert.device_id == device_id, Alert.state.in_(OPEN)
        )
    ).first():
        return None
    alert = Alert(
        rule=rule,
        device_id=device_id,
        state=AlertState.active,
        severity=rule.severity,
        value=value,
        raised_at=now,
    )
    db.session.add(alert)
    db.session.flush()
    command = _rule_command(rule, rule.on_raise, device_id, now)
    alert.raise_command_id = command.id if command is not None else None
    _notify(alert, notifications.ALERT_RAISED, now)
    audit.record(
        None,
        "raise",
        alert,
        {
            "rule_id": [None, rule.id],
            "device_id": [None, device_id],
            "state": [None, AlertState.active.value],
            "value": [None, value],
            **({"command_id": [None, command.id]} if command is not None else {}),
        },
    )
    return alert


def resolve(alert: Alert, now: datetime, actor: User | None = None) -> int:
    """Resolve an open alert (its condition cleared, or a person acknowledged a failed
    command): queue ``on_clear`` and the notifications, audit. Returns 1, or 0 when it was
    no longer open."""
    before = alert.state
    if not _close(alert, now):
        return 0
    command = _rule_command(alert.rule, alert.rule.on_clear, alert.device_id, now)
    if command is not None:
        alert.clear_command_id = command.id
    db.session.flush()
    _notify(alert, notifications.ALERT_RESOLVED, now)
    changes: dict[str, Any] = {"state": [before.value, AlertState.resolved.value]}
    if command is not None:
        changes["command_id"] = [None, command.id]
    audit.record(actor, "resolve", alert, changes)
    return 1


def _close(alert: Alert, now: datetime) -> bool:
    """Mark an open alert resolved (a conditional UPDATE: whoever closes it first wins) and
    read it back; False when it was no longer open."""
    result = db.session.execute(
        update(_alerts)
        .where(_alerts.c.id == alert.id, _alerts.c.state.in_([s.value for s in OPEN]))
        .values(state=AlertState.resolved.value, resolved_at=now)
    )
    db.session.refresh(alert)
    return cast(CursorResult[Any], result).rowcount == 1


def resolve_open(rule: Rule, now: datetime, actor: User | None = None) -> int:
    """Resolve every open alert of a rule (it was disabled); no ``on_clear`` command: the
    condition did not clear. Returns how many."""
    count = 0
    for alert in db.session.execute(
        select(Alert).where(Alert.rule_id == rule.id, Alert.state.in_(OPEN))
    ).scalars():
        before = alert.state
        if not _close(alert, now):
            continue
        _notify(alert, notifications.ALERT_RESOLVED, now)
        audit.record(
            actor,
            "resolve",
            alert,
            {"state": [before.value, AlertState.resolved.value], "reason": [None, "rule_disabled"]},
        )
        count += 1
    return count


def acknowledge(actor: User | None, alert: Alert, now: datetime | None = None) -> Alert:
    """A person has seen the alert: ``active`` becomes ``acknowledged`` (it stays open until
    its condition clears); a ``command_failed`` alert, which has no condition to clear, is
    resolved. Acknowledging an acknowledged alert changes nothing; a resolved one is a
    Conflict. Raises Forbidden/NotFound when the actor may not change the alert's device."""
    if actor is not None:
        check_change(actor, alert.device)
    now = now or utcnow()
    if alert.state is AlertState.resolved:
        raise Conflict(f"Alert {alert.id} is already resolved.", code="already_resolved")
    if alert.state is AlertState.active:
        result = db.session.execute(
            update(_alerts)
            .where(_alerts.c.id == alert.id, _alerts.c.state == AlertState.active.value)
            .values(
                state=AlertState.acknowledged.value,
                acknowledged_at=now,
                acknowledged_by_id=actor.id if actor is not None else None,
            )
        )
        db.session.refresh(alert)
        if cast(CursorResult[Any], result).rowcount == 1:
            audit.record(
                actor,
                "acknowledge",
                alert,
                {"state": [AlertState.active.value, AlertState.acknowledged.value]},
            )
    if alert.rule.kind is RuleKind.command_failed and alert.state is AlertState.acknowledged:
        resolve(alert, now, actor)
    return alert


def _rule_command(
    rule: Rule, spec: dict[str, Any] | None, alert_device_id: int, now: datetime
) -> Command | None:
    """Queue a rule's command (an INSERT: it never waits for the device), if its device is
    still in the rule owner's reach."""
    if not spec or not spec.get("action"):
        return None
    device = db.session.get(Device, spec.get("device_id") or alert_device_id)
    if device is None or not may_change_device(rule.owner, device):
        return None
    command = Command(
        device=device,
        action=spec["action"],
        payload=dict(spec.get("payload") or {}),
        status=CommandStatus.queued,
        source=CommandSource.rule,
        created_at=now,
        expires_at=now + timedelta(seconds=COMMAND_TTL_SECONDS),
    )
    db.session.add(command)
    db.session.flush()
    wake_bridge()
    return command


def _notify(alert: Alert, event: str, now: datetime) -> None:
    rule = alert.rule
    if not rule.notify:
        return
    device = db.session.get(Device, alert.device_id)
    notifications.notify(
        rule.notify,
        notifications.event_body(
            event,
            at=now,
            alert=as_dict(alert),
            rule={
                "id": rule.id,
                "name": rule.name,
                "kind": rule.kind,
                "severity": rule.severity,
            },
            device={"id": alert.device_id, "name": device.name if device else ""},
        ),
        now,
    )


# ---- look-ups and presentation --------------------------------------------------------------


def as_dict(alert: Alert) -> dict[str, Any]:
    """The alert as the contract shows it."""
    return {
        "id": alert.id,
        "rule_id": alert.rule_id,
        "device_id": alert.device_id,
        "state": alert.state,
        "severity": alert.severity,
        "value": alert.value,
        "raised_at": alert.raised_at,
        "acknowledged_at": alert.acknowledged_at,
        "resolved_at": alert.resolved_at,
    }


def alert_query_for(user: User) -> Select[Alert]:
    """Alerts on devices the user may see."""
    return scope(select(Alert), user, Alert.device_id)


def get_alert_for(user: User, alert_id: int) -> Alert:
    """The alert if its device is in the user's reach; raises NotFound otherwise."""
    alert = None
    if isinstance(alert_id, int) and not isinstance(alert_id, bool):
        alert = db.session.get(Alert, alert_id)
    if alert is None or not may_see_device(user, alert.device):
        raise NotFound("No such alert.")
    return alert


def list_alerts(
    user: User,
    *,
    state: AlertState | str | None = None,
    device_id: int | None = None,
    rule_id: int | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[Alert]:
    """Alerts in the user's reach, newest first; ``state`` ``open`` means active or
    acknowledged; ``before_id`` is the keyset."""
    query = alert_query_for(user)
    if state == "open":
        query = query.where(Alert.state.in_(OPEN))
    elif state is not None:
        query = query.where(Alert.state == AlertState(state))
    if device_id is not None:
        query = query.where(Alert.device_id == device_id)
    if rule_id is not None:
        query = query.where(Alert.rule_id == rule_id)
    if before_id is not None:
        query = query.where(Alert.id < before_id)
    return list(db.session.execute(query.order_by(Alert.id.desc()).limit(limit)).scalars())


def open_alerts_for(user: User, limit: int = 20) -> list[Alert]:
    """Open alerts in the user's reach, active before acknowledged, critical first, newest
    first: what the dashboard shows first."""
    rank = case(
        (Alert.severity == Severity.critical, 0), (Alert.severity == Severity.warning, 1), else_=2
    )
    query = (
        alert_query_for(user)
        .where(Alert.state.in_(OPEN))
        .order_by((Alert.state != AlertState.active), rank, Alert.id.desc())
        .limit(limit)
    )
    return list(db.session.execute(query).scalars())


def count_open(user: User) -> int:
    """How many alerts in the user's reach are open."""
    query = alert_query_for(user).where(Alert.state.in_(OPEN))
    return db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
