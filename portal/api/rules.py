"""Rules for people and scripts: CRUD, each rule with its condition in words and its state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from portal.api.deleting import deleted
from portal.api.pagination import decode_id_cursor, page
from portal.api.routing import patch_fields, route
from portal.api.schemas import DeletionOut, RuleIn, RuleOut, RulePage, RulePatch, RulesQuery
from portal.extensions import db
from portal.models import Alert, AlertState, Rule, User
from portal.services import deletes, rules

NOT_NULL = ("name", "enabled", "severity", "for_seconds")
OPEN = (AlertState.active, AlertState.acknowledged)
COMPUTED = ("owner", "description", "state")


def _alerting(rule_ids: Sequence[int]) -> set[int]:
    """Which of the rules have an open alert: one query for a whole page."""
    if not rule_ids:
        return set()
    return set(
        db.session.execute(
            select(Alert.rule_id).where(Alert.rule_id.in_(rule_ids), Alert.state.in_(OPEN))
        ).scalars()
    )


def _out(rule: Rule, alerting: bool) -> RuleOut:
    values: dict[str, Any] = {
        name: getattr(rule, name) for name in RuleOut.model_fields if name not in COMPUTED
    }
    state = "alerting" if alerting else "pending" if rule.pending_since is not None else "ok"
    return RuleOut.model_validate(
        {
            **values,
            "owner": rule.owner.username,
            "description": rules.describe(rule),
            "state": state,
        }
    )


def _one(rule: Rule) -> RuleOut:
    return _out(rule, rule.id in _alerting([rule.id]))


@route(
    "/rules",
    summary="List rules",
    tag="rules",
    query=RulesQuery,
    responses={200: RulePage},
)
def list_rules(user: User, query: RulesQuery):
    """Operators see their own rules; viewers and admins see all. Ordered by id; filter by
    ``device_id`` and ``kind``."""
    after = decode_id_cursor(query.cursor)
    statement = rules.rule_query_for(user).options(joinedload(Rule.owner)).order_by(Rule.id)
    if after is not None:
        statement = statement.where(Rule.id > after)
    if query.device_id is not None:
        statement = statement.where(Rule.device_id == query.device_id)
    if query.kind is not None:
        statement = statement.where(Rule.kind == query.kind)
    rows = db.session.execute(statement.limit(query.limit + 1)).scalars().all()
    shown, cursor = page(rows, query.limit, lambda r: (r.id,))
    alerting = _alerting([r.id for r in shown])
    return RulePage(items=[_out(r, r.id in alerting) for r in shown], next_cursor=cursor)


@route(
    "/rules",
    "POST",
    summary="Create a rule",
    tag="rules",
    body=RuleIn,
    responses={201: RuleOut},
    errors=(409,),
)
def create_rule(user: User, body: RuleIn):
    """The rule acts in its owner's reach: its device, its commands' devices and the channels
    it notifies must be the owner's to use. 409 when the owner has a rule of that name."""
    rule = rules.create_rule(user, **body.model_dump())
    return _out(rule, alerting=False), 201


@route(
    "/rules/{rule_id}",
    summary="Show a rule",
    tag="rules",
    responses={200: RuleOut},
)
def show_rule(user: User, rule_id: int):
    return _one(rules.get_rule_for(user, rule_id))


@route(
    "/rules/{rule_id}",
    "PATCH",
    summary="Change a rule",
    tag="rules",
    body=RulePatch,
    responses={200: RuleOut},
    errors=(409,),
)
def change_rule(user: User, rule_id: int, body: RulePatch):
    """Only the fields sent change; the kind cannot; ``owner`` (a user name) is for admins.
    Changing the condition starts its judgement afresh; disabling resolves its open alerts."""
    rule = rules.get_rule_for(user, rule_id, for_change=True)
    fields = patch_fields(body, NOT_NULL, ("owner", "kind"))
    return _one(rules.update_rule(user, rule, **fields))


@route(
    "/rules/{rule_id}",
    "DELETE",
    summary="Delete a rule",
    tag="rules",
    responses={204: None, 200: DeletionOut},
)
def delete_rule(user: User, rule_id: int):
    """Its alerts, open or not, go with it, in the audit log. Answers 204; with `Prefer:
    return=representation`, 200 and what was deleted."""
    return deleted(rules.delete_rule(user, rules.get_rule_for(user, rule_id, for_change=True)))


@route(
    "/rules/{rule_id}/delete-preview",
    summary="What deleting a rule would remove",
    tag="rules",
    responses={200: DeletionOut},
    errors=(403,),
)
def preview_rule_delete(user: User, rule_id: int):
    """Nothing is deleted. Counts stop at 10,000 (`more`: there are more); 403 for a role
    that may not delete it."""
    return DeletionOut.of(deletes.preview(user, rules.get_rule_for(user, rule_id, for_change=True)))
