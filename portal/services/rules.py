"""Rules: what the portal watches for. Creating, changing, deleting, and who reaches which.

Rules are owned like channels (an operator makes and changes their own, an admin all, a viewer
reads them all) and act in their owner's reach: the device a rule watches and the devices its
``on_raise`` / ``on_clear`` commands go to are devices the owner may change, and it notifies
only channels the owner may use. A rule out of reach is "not found". Judging readings, silence
and failed commands is ``portal.services.alerts``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Select, false, select

from portal.extensions import db
from portal.models import Device, Role, Rule, RuleKind, Severity, User, utcnow
from portal.services import audit, deletes
from portal.services.access import (
    check_owned_change,
    get_device_for,
    may_change_device,
    may_change_owned,
    may_see_owned,
    require_writer,
    sees_all,
)
from portal.services.channels import usable_channel_ids
from portal.services.commands import validate_action, validate_payload
from portal.services.errors import Conflict, InvalidInput, NotFound
from portal.services.readings import METRIC_RE
from portal.services.users import resolve_owner

OPS = (">", ">=", "<", "<=")
MAX_NAME = 100
MAX_FOR_SECONDS = 7 * 24 * 3600
# A device's last_seen_at moves at most once a minute (devices.touch_seconds): silence shorter
# than two of those steps could not be told from traffic.
MIN_SILENCE_SECONDS = 120
MAX_SILENCE_SECONDS = 30 * 24 * 3600
RULE_FIELDS = (
    "name",
    "kind",
    "device_id",
    "enabled",
    "severity",
    "metric",
    "op",
    "value",
    "for_seconds",
    "clear_value",
    "seconds",
    "on_raise",
    "on_clear",
    "notify",
    "owner_id",
)
# The fields only one kind has: given for another kind they are an error.
KIND_ONLY = {
    "metric": RuleKind.threshold,
    "op": RuleKind.threshold,
    "value": RuleKind.threshold,
    "for_seconds": RuleKind.threshold,
    "clear_value": RuleKind.threshold,
    "seconds": RuleKind.silence,
}
# Changing one of these starts the rule's judgement afresh.
CONDITION = ("device_id", "metric", "op", "value", "for_seconds", "clear_value", "seconds")
EDITABLE = tuple(name for name in RULE_FIELDS if name != "owner_id") + ("owner",)


# ---- reach ----------------------------------------------------------------------------------


def rule_query_for(user: User, *, for_change: bool = False) -> Select[Rule]:
    """Rules the user may see (or, with ``for_change``, change)."""
    query = select(Rule)
    if for_change and user.role is Role.viewer:
        return query.where(false())
    if not sees_all(user):
        query = query.where(Rule.owner_id == user.id)
    return query


def may_change_rule(user: User, rule: Rule) -> bool:
    return may_change_owned(user, rule.owner_id)


def get_rule_for(user: User, rule_id: int, *, for_change: bool = False) -> Rule:
    """The rule if the user may see it (and change it, with ``for_change``).

    Raises NotFound when absent or out of reach, Forbidden when visible but read-only.
    """
    rule = None
    if isinstance(rule_id, int) and not isinstance(rule_id, bool):
        rule = db.session.get(Rule, rule_id)
    if rule is None or not may_see_owned(user, rule.owner_id):
        raise NotFound("No such rule.")
    if for_change:
        check_owned_change(user, rule.owner_id, "rule")
    return rule


# ---- validation -----------------------------------------------------------------------------


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("A number.")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError("A finite number.") from None
    if not math.isfinite(number):
        raise ValueError("A finite number.")
    return number


def _whole(value: Any, low: int, high: int, unit: str = "seconds") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"Whole {unit} from {low} to {high}.")
    return value


def _device_in_reach(actor: User | None, owner: User, device_id: Any, field: str) -> Device:
    """The device ``device_id`` names, if both the actor and the rule's owner may change it."""
    if isinstance(device_id, bool) or not isinstance(device_id, int):
        raise InvalidInput(fields={field: "A device id (a whole number)."})
    device = db.session.get(Device, device_id)
    try:
        if actor is not None:
            device = get_device_for(actor, device_id, for_change=True)
    except NotFound:
        device = None
    # A device out of reach looks exactly like one that does not exist.
    if device is None or not may_change_device(owner, device):
        raise InvalidInput(fields={field: "No such device in the rule owner's reach."})
    return device


def _command(actor: User | None, owner: User, value: Any, field: str) -> dict[str, Any] | None:
    """An ``on_raise`` / ``on_clear`` value checked: None or ``{"action", "payload",
    "device_id"}`` (``device_id`` None: the alert's device)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidInput(
            fields={field: 'An object: {"action": "fan.on", "payload": {}, "device_id": 9}.'}
        )
    errors: dict[str, str] = {}
    unknown = sorted(set(value) - {"action", "payload", "device_id"})
    for name in unknown:
        errors[f"{field}.{name}"] = "Unknown field."
    clean: dict[str, Any] = {"action": None, "payload": {}, "device_id": None}
    for name, check in (("action", validate_action), ("payload", validate_payload)):
        try:
            clean[name] = check(value.get(name), f"{field}.{name}")
        except InvalidInput as exc:
            errors.update(exc.fields)
    if value.get("device_id") is not None:
        try:
            clean["device_id"] = _device_in_reach(
                actor, owner, value["device_id"], f"{field}.device_id"
            ).id
        except InvalidInput as exc:
            errors.update(exc.fields)
    if errors:
        raise InvalidInput(fields=errors)
    return clean


def _clean(
    actor: User | None, owner: User, kind: RuleKind, values: dict[str, Any]
) -> dict[str, Any]:
    """Check the fields present in ``values`` for a rule of ``kind`` owned by ``owner``;
    InvalidInput names every bad one."""
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}

    def check(field: str, make: Any) -> None:
        if field in values:
            try:
                clean[field] = make(values[field])
            except ValueError as exc:
                errors[field] = str(exc)
            except InvalidInput as exc:
                errors.update(exc.fields)

    def name(value: Any) -> str:
        text = "" if value is None else str(value).strip()
        if not text:
            raise ValueError("A name is required.")
        if len(text) > MAX_NAME:
            raise ValueError(f"At most {MAX_NAME} characters.")
        return text

    def severity(value: Any) -> Severity:
        try:
            return Severity(value)
        except ValueError:
            raise ValueError("One of info, warning, critical.") from None

    def metric(value: Any) -> str:
        if not isinstance(value, str) or not METRIC_RE.match(value):
            raise ValueError("1-64 characters: a-z, 0-9, _ . - (e.g. temperature).")
        return value

    def op(value: Any) -> str:
        if value not in OPS:
            raise ValueError("One of >, >=, <, <=.")
        return str(value)

    def device(value: Any) -> int | None:
        if value is None:
            if kind is RuleKind.command_failed:
                return None
            raise ValueError("A device is required.")
        return _device_in_reach(actor, owner, value, "device_id").id

    for field, wanted in KIND_ONLY.items():
        given = values.get(field)
        # for_seconds 0 is every rule's default; any other value is a field of another kind.
        if given is not None and kind is not wanted and not (field == "for_seconds" and given == 0):
            errors[field] = f"Only {wanted.value} rules have one."
    check("name", name)
    check("severity", severity)
    check("device_id", device)
    if "enabled" in values:
        clean["enabled"] = bool(values["enabled"])
    if kind is RuleKind.threshold:
        check("metric", metric)
        check("op", op)
        check("value", _number)
        check("for_seconds", lambda v: _whole(v, 0, MAX_FOR_SECONDS))
        check("clear_value", lambda v: None if v is None else _number(v))
    elif kind is RuleKind.silence:
        check("seconds", lambda v: _whole(v, MIN_SILENCE_SECONDS, MAX_SILENCE_SECONDS))
    check("on_raise", lambda v: _command(actor, owner, v, "on_raise"))
    check("on_clear", lambda v: _command(actor, owner, v, "on_clear"))
    check("notify", lambda v: usable_channel_ids(owner, _list(v)))
    if errors:
        raise InvalidInput(fields=errors)
    return clean


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise InvalidInput(fields={"notify": "A list of channel ids, e.g. [1, 2]."})
    return list(value)


def _check_whole(rule: Rule) -> None:
    """The checks across fields, on the rule as it would be stored."""
    errors: dict[str, str] = {}
    if rule.kind is RuleKind.threshold:
        for field in ("metric", "op", "value"):
            if getattr(rule, field) is None:
                errors[field] = "Required for a threshold rule."
        if not errors and rule.clear_value is not None and rule.value is not None:
            above = rule.op in (">", ">=")
            if (above and rule.clear_value > rule.value) or (
                not above and rule.clear_value < rule.value
            ):
                side = "at most" if above else "at least"
                errors["clear_value"] = (
                    f"For {rule.op} {rule.value:g} the clear value must be {side} "
                    f"{rule.value:g} (e.g. > 30 clearing at 27)."
                )
    elif rule.kind is RuleKind.silence and rule.seconds is None:
        errors["seconds"] = "Required for a silence rule."
    if errors:
        raise InvalidInput(fields=errors)


def _kind(value: Any) -> RuleKind:
    try:
        return RuleKind(value)
    except ValueError:
        raise InvalidInput(fields={"kind": "One of threshold, silence, command_failed."}) from None


def _check_name_free(owner_id: int, name: str, rule_id: int | None = None) -> None:
    taken = db.session.execute(
        select(Rule.id).where(Rule.owner_id == owner_id, Rule.name == name)
    ).scalar()
    if taken is not None and taken != rule_id:
        raise Conflict(
            f"The owner already has a rule named {name!r}.",
            code="name_taken",
            fields={"name": "This name is taken."},
        )


# ---- changes --------------------------------------------------------------------------------


def create_rule(
    actor: User | None,
    *,
    name: str,
    kind: RuleKind | str,
    device_id: int | None = None,
    enabled: bool = True,
    severity: Severity | str = Severity.warning,
    metric: str | None = None,
    op: str | None = None,
    value: float | None = None,
    for_seconds: int = 0,
    clear_value: float | None = None,
    seconds: int | None = None,
    on_raise: Mapping[str, Any] | None = None,
    on_clear: Mapping[str, Any] | None = None,
    notify: list[int] | None = None,
    owner: User | str | None = None,
    now: datetime | None = None,
) -> Rule:
    """Make a rule (``actor`` None: the shell, which must name an ``owner``).

    Raises Forbidden for viewers, InvalidInput naming each bad field, Conflict when the owner
    has a rule of that name.
    """
    if actor is not None:
        require_writer(actor)
    rule_kind = _kind(kind)
    owner_user = resolve_owner(actor, owner, "rules")
    values: dict[str, Any] = {
        "name": name,
        "device_id": device_id,
        "enabled": enabled,
        "severity": severity,
        "on_raise": on_raise,
        "on_clear": on_clear,
        "notify": notify,
        "metric": metric,
        "op": op,
        "value": value,
        "for_seconds": for_seconds,
        "clear_value": clear_value,
        "seconds": seconds,
    }
    clean = _clean(actor, owner_user, rule_kind, values)
    now = now or utcnow()
    rule = Rule(owner=owner_user, kind=rule_kind, created_at=now, updated_at=now, **clean)
    rule.for_seconds = rule.for_seconds or 0
    _check_whole(rule)
    _check_name_free(owner_user.id, rule.name)
    db.session.add(rule)
    db.session.flush()
    audit.record(actor, "create", rule, audit.diff({}, audit.snapshot(rule, RULE_FIELDS)))
    return rule


def update_rule(
    actor: User | None, rule: Rule, *, now: datetime | None = None, **fields: Any
) -> Rule:
    """Change a rule: any field but its kind (make a new rule instead); ``owner`` is for admins.

    A change to what the rule watches starts its judgement afresh (an open alert stays open
    until the new condition clears); disabling it resolves its open alerts.
    """
    from portal.services import alerts  # alerts builds on rules

    if actor is not None:
        check_owned_change(actor, rule.owner_id, "rule")
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise InvalidInput(fields=dict.fromkeys(sorted(unknown), "Unknown field."))
    kind = fields.pop("kind", None)
    if kind is not None and _kind(kind) is not rule.kind:
        raise InvalidInput(fields={"kind": "A rule's kind cannot change; make a new one."})
    owner = rule.owner
    if fields.get("owner") is not None:
        if actor is not None and actor.role is not Role.admin:
            raise InvalidInput(fields={"owner": "Only an admin may give a rule away."})
        owner = resolve_owner(actor, fields["owner"], "rules")
    fields.pop("owner", None)
    if owner is not rule.owner:
        # The new owner's reach must hold what the rule already names.
        for name in ("device_id", "on_raise", "on_clear", "notify"):
            fields.setdefault(name, getattr(rule, name))
    before = audit.snapshot(rule, RULE_FIELDS)
    clean = _clean(actor, owner, rule.kind, fields)
    with db.session.no_autoflush:
        rule.owner = owner
        for name, value in clean.items():
            setattr(rule, name, value)
        rule.for_seconds = rule.for_seconds or 0
        _check_whole(rule)
        # Inside no_autoflush: the look-up must not flush the new name into the unique index.
        _check_name_free(owner.id, rule.name, rule.id)
    now = now or utcnow()
    after = audit.snapshot(rule, RULE_FIELDS)
    if any(before[name] != after[name] for name in CONDITION):
        rule.pending_since = rule.pending_value = rule.judged_until = None
    changes = audit.diff(before, after)
    if changes:
        rule.updated_at = now
    db.session.flush()
    if changes:
        audit.record(actor, "update", rule, changes)
    if before["enabled"] and not rule.enabled:
        rule.pending_since = rule.pending_value = None
        alerts.resolve_open(rule, now, actor=actor)
    return rule


def set_rule_enabled(
    actor: User | None, rule: Rule, enabled: bool, now: datetime | None = None
) -> Rule:
    """Enable or disable a rule (a no-op when already so); disabling resolves its alerts."""
    if bool(enabled) == rule.enabled:
        if actor is not None:
            check_owned_change(actor, rule.owner_id, "rule")
        return rule
    return update_rule(actor, rule, enabled=bool(enabled), now=now)


def delete_rule(actor: User | None, rule: Rule) -> deletes.Deletion:
    """Delete a rule with its alerts, audited (``services.deletes``); return what went."""
    deletes.check_delete(actor, rule)
    return deletes.remove(actor, rule, audit.diff(audit.snapshot(rule, RULE_FIELDS), {}))


# ---- presentation ---------------------------------------------------------------------------


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def describe(rule: Rule) -> str:
    """The condition in words: "temperature > 30 for 5 min, clears at 27", "silent for 1 h",
    "a command fails or expires"."""
    if rule.kind is RuleKind.threshold:
        text = f"{rule.metric} {rule.op} {rule.value:g}"
        if rule.for_seconds:
            text += f" for {_duration(rule.for_seconds)}"
        if rule.clear_value is not None:
            text += f", clears at {rule.clear_value:g}"
        return text
    if rule.kind is RuleKind.silence:
        return f"silent for {_duration(rule.seconds or 0)}"
    return "a command fails or expires"
