"""Alerts for people and scripts: list, show, acknowledge."""

from __future__ import annotations

from portal.api.pagination import decode_id_cursor, page
from portal.api.routing import route
from portal.api.schemas import AlertOut, AlertPage, AlertsQuery
from portal.models import Alert, User
from portal.services import alerts


def _out(alert: Alert) -> AlertOut:
    return AlertOut.model_validate(alerts.as_dict(alert))


@route(
    "/alerts",
    summary="List alerts, newest first",
    tag="alerts",
    query=AlertsQuery,
    responses={200: AlertPage},
)
def list_alerts(user: User, query: AlertsQuery):
    """Alerts on the devices the caller may see; filter by ``state`` (``open``: active or
    acknowledged), ``device_id`` and ``rule_id``."""
    rows = alerts.list_alerts(
        user,
        state=query.state,
        device_id=query.device_id,
        rule_id=query.rule_id,
        limit=query.limit + 1,
        before_id=decode_id_cursor(query.cursor),
    )
    shown, cursor = page(rows, query.limit, lambda a: (a.id,))
    return AlertPage(items=[_out(a) for a in shown], next_cursor=cursor)


@route(
    "/alerts/{alert_id}",
    summary="Show an alert",
    tag="alerts",
    responses={200: AlertOut},
)
def show_alert(user: User, alert_id: int):
    return _out(alerts.get_alert_for(user, alert_id))


@route(
    "/alerts/{alert_id}/ack",
    "POST",
    summary="Acknowledge an alert",
    tag="alerts",
    responses={200: AlertOut},
    errors=(409,),
)
def acknowledge_alert(user: User, alert_id: int):
    """An ``active`` alert becomes ``acknowledged`` and stays open until its condition clears;
    a ``command_failed`` alert, which has no condition to clear, is resolved. Acknowledging an
    acknowledged alert changes nothing; a resolved one is 409."""
    alert = alerts.get_alert_for(user, alert_id)
    return _out(alerts.acknowledge(user, alert))
