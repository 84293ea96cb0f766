"""Admin view of alerts (newest first, open ones a click away, acknowledged through the service;
an alert's page shows its rule, its commands and its notifications; never made or changed by
hand), and how an alert, a rule's kind and a severity are shown on any page."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.helpers import get_redirect_target
from flask_admin.model.template import TemplateLinkRowAction
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import pgettext
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import select

from portal.admin.base import SecureModelView
from portal.admin.notifications import status_badge
from portal.extensions import db
from portal.models import Alert, AlertState, NotificationDelivery, RuleKind
from portal.services import access, alerts, rules
from portal.services.errors import DomainError

STATE_COLORS = {"active": "danger", "acknowledged": "warning", "resolved": "success"}
SEVERITY_COLORS = {"info": "info", "warning": "warning", "critical": "danger"}
# The list's tabs: the filter argument each one sets (named filter URLs, the same in every
# language).
OPEN_FILTER = {"flt0_state_in_list": "active,acknowledged"}


def kind_name(kind: RuleKind | str) -> str:
    return {
        "threshold": _("Threshold"),
        "silence": _("Silence"),
        "command_failed": _("Command failed"),
    }.get(str(kind), str(kind))


def severity_badge(severity: Any) -> Markup:
    value = str(severity)
    names = {"info": _("info"), "warning": _("warning"), "critical": _("critical")}
    return Markup('<span class="badge badge-{}" data-testid="severity">{}</span>').format(
        SEVERITY_COLORS.get(value, "light"), names.get(value, value)
    )


def state_badge(state) -> Markup:
    value = str(state)
    names = {
        "active": pgettext("alert", "active"),
        "acknowledged": pgettext("alert", "acknowledged"),
        "resolved": pgettext("alert", "resolved"),
    }
    return Markup('<span class="badge badge-{}" data-testid="alert-state">{}</span>').format(
        STATE_COLORS.get(value, "light"), names.get(value, value)
    )


def alert_value(alert: Alert) -> Markup | str:
    """The value in the rule's terms: a reading, seconds of silence, or the failed command."""
    if alert.value is None:
        return "—"
    kind = alert.rule.kind
    if kind is RuleKind.command_failed:
        return Markup('<a href="{}">{}</a>').format(
            url_for("commands.details_view", id=int(alert.value)),
            _("command #%(id)d", id=int(alert.value)),
        )
    if kind is RuleKind.silence:
        return _("silent %(num)d s", num=int(alert.value))
    return f"{alert.value:g}"


def rule_link(alert: Alert) -> Markup:
    rule = alert.rule
    if not access.may_see_owned(current_user, rule.owner_id):
        return Markup("{}").format(rule.name)
    return Markup('<a href="{}">{}</a>').format(
        url_for("rules.details_view", id=rule.id), rule.name
    )


def device_link(alert: Alert) -> Markup:
    return Markup('<a href="{}">{}</a>').format(
        url_for("devices.details_view", id=alert.device_id), alert.device.name
    )


def alert_deliveries(alert: Alert) -> list[NotificationDelivery]:
    """The notifications the alert's rule sent about this alert (its raise and its clear)."""
    channel_ids = list(alert.rule.notify or [])
    if not channel_ids:
        return []
    rows = db.session.execute(
        select(NotificationDelivery)
        .where(
            NotificationDelivery.channel_id.in_(channel_ids),
            NotificationDelivery.created_at >= alert.raised_at,
        )
        .order_by(NotificationDelivery.id)
        .limit(200)
    ).scalars()
    return [d for d in rows if ((d.body or {}).get("alert") or {}).get("id") == alert.id]


class AlertView(SecureModelView):
    device_column = "device_id"
    supports_create = supports_edit = supports_delete = False
    column_list = (
        "id",
        "state",
        "severity",
        "rule",
        "device",
        "value",
        "raised_at",
        "acknowledged_at",
        "resolved_at",
    )
    column_details_list = (
        "id",
        "state",
        "severity",
        "rule",
        "device",
        "value",
        "raised_at",
        "acknowledged_at",
        "acknowledged_by",
        "resolved_at",
    )
    column_export_list = column_details_list
    column_labels = {
        "id": _l("ID"),
        "state": _l("State"),
        "severity": _l("Severity"),
        "rule": _l("Rule"),
        "device": _l("Device"),
        "value": _l("Value"),
        "raised_at": _l("Raised"),
        "acknowledged_at": _l("Acknowledged"),
        "acknowledged_by": _l("Acknowledged by"),
        "resolved_at": _l("Resolved"),
        "device_id": _l("Device ID"),
    }
    column_formatters = {
        "state": lambda v, c, m, n: state_badge(m.state),
        "severity": lambda v, c, m, n: severity_badge(m.severity),
        "rule": lambda v, c, m, n: rule_link(m),
        "device": lambda v, c, m, n: device_link(m),
        "value": lambda v, c, m, n: alert_value(m),
    }
    column_formatters_export = {
        "state": lambda v, c, m, n: m.state.value,
        "severity": lambda v, c, m, n: m.severity.value,
        "rule": lambda v, c, m, n: m.rule.name,
        "device": lambda v, c, m, n: m.device.name,
        "acknowledged_by": lambda v, c, m, n: (
            m.acknowledged_by.username if m.acknowledged_by else ""
        ),
    }
    column_filter_labels = {"rule.name": _l("Rule name"), "device.name": _l("Device name")}
    column_filters = ("state", "severity", "raised_at", "rule.name", "device.name", "device_id")
    column_sortable_list = ("id", "state", "severity", "raised_at", "resolved_at")
    column_default_sort = ("id", True)
    column_extra_row_actions = [
        TemplateLinkRowAction("row_actions.acknowledge_row", _l("Acknowledge"))
    ]
    list_template = "admin/alert_list.html"
    details_template = "admin/alert_details.html"

    @property
    def may_acknowledge(self) -> bool:
        return self._writer()

    def render(self, template, **kwargs):
        if template == self.list_template:
            kwargs["open_filter"] = OPEN_FILTER
            kwargs["open_count"] = self._open_count()
        model = kwargs.get("model")
        if template == self.details_template and model is not None:
            kwargs["describe"] = rules.describe
            kwargs["kind_name"] = kind_name
            kwargs["deliveries"] = alert_deliveries(model)
            kwargs["may_change"] = access.may_change_device(current_user, model.device)
            kwargs["state_badge"] = state_badge
            kwargs["severity_badge"] = severity_badge
            kwargs["delivery_badge"] = status_badge
            kwargs["alert_value"] = alert_value
            kwargs["may_see_rule"] = access.may_see_owned(current_user, model.rule.owner_id)
        return super().render(template, **kwargs)

    def _open_count(self) -> int:
        return (
            self.get_count_query()
            .filter(self.model.state.in_([AlertState.active, AlertState.acknowledged]))
            .scalar()
        )

    @expose("/acknowledge/", methods=("POST",))
    def acknowledge_view(self):
        """One alert acknowledged, from its row, its page, the dashboard or its device's page;
        back to where the button was."""
        alert = self.get_one(request.values.get("id"))
        try:
            alerts.acknowledge(current_user, alert)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            if exc.status in (403, 404):
                abort(exc.status)
            flash(exc.message, "error")
        else:
            flash(_("Alert %(id)d acknowledged.", id=alert.id), "success")
        return redirect(get_redirect_target() or self.get_url(".details_view", id=alert.id))

    @action("acknowledge", _l("Acknowledge"))
    def action_acknowledge(self, ids):
        count = 0
        try:
            for alert in self.selected(ids):
                if alert.state is AlertState.active and access.may_change_device(
                    current_user, alert.device
                ):
                    alerts.acknowledge(current_user, alert)
                    count += 1
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")
            return
        flash(_("%(num)d alert(s) acknowledged.", num=count), "success")
