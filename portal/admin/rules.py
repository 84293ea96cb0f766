"""Admin view of rules: one form for threshold, silence and command-failed rules, each rule's
state (ok, pending, alerting) on the list, and its recent alerts on its page."""

from __future__ import annotations

import json
from typing import Any

from flask import abort, flash, g, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import pgettext
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import func, select
from wtforms import (
    BooleanField,
    FloatField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional

from portal.admin.alerts import alert_value, kind_name, severity_badge
from portal.admin.alerts import state_badge as alert_state
from portal.admin.base import JSONObjectField, OwnerFormMixin, SecureModelView
from portal.admin.records import changeable_devices
from portal.extensions import db
from portal.models import Alert, NotificationChannel, Role, Rule
from portal.services import access, alerts, rules
from portal.services.channels import channel_query_for
from portal.services.errors import DomainError, InvalidInput

# The fields each kind has besides the common ones; the others are left out of its form.
KIND_FIELDS = {
    "threshold": ("metric", "op", "value", "for_seconds", "clear_value"),
    "silence": ("seconds",),
    "command_failed": (),
}
ALL_KIND_FIELDS = tuple(name for names in KIND_FIELDS.values() for name in names)
COMMANDS = ("on_raise", "on_clear")
FIELDS = (
    "name",
    "kind",
    "device_id",
    *ALL_KIND_FIELDS,
    "severity",
    "enabled",
    "notify",
    *(f"{c}_{part}" for c in COMMANDS for part in ("action", "payload", "device")),
)
STATE_COLORS = {"ok": "success", "pending": "warning", "alerting": "danger", "off": "secondary"}


def state_badge(state: str, open_count: int = 0) -> Markup:
    names = {
        "ok": _("ok"),
        "pending": _("pending"),
        "alerting": _("alerting"),
        "off": pgettext("rule", "disabled"),
    }
    text = names.get(state, state)
    if state == "alerting" and open_count > 1:
        text = f"{text} ({open_count})"
    return Markup('<span class="badge badge-{}" data-testid="rule-state">{}</span>').format(
        STATE_COLORS.get(state, "light"), text
    )


def open_alert_counts(rule_ids: list[int]) -> dict[int, int]:
    """How many open alerts each rule has: one query for a page of rules."""
    if not rule_ids:
        return {}
    rows = db.session.execute(
        select(Alert.rule_id, func.count())
        .where(Alert.rule_id.in_(rule_ids), Alert.state.in_(alerts.OPEN))
        .group_by(Alert.rule_id)
    ).all()
    return {rule_id: int(count) for rule_id, count in rows}


def rule_state(rule: Rule, open_count: int) -> str:
    """ok, pending (a threshold's condition holds, its duration not yet passed), alerting (an
    open alert), or off (disabled, nothing open)."""
    if open_count:
        return "alerting"
    if not rule.enabled:
        return "off"
    return "pending" if rule.pending_since is not None else "ok"


def rule_states(rule_list: list[Rule]) -> dict[int, tuple[str, int]]:
    counts = open_alert_counts([r.id for r in rule_list])
    return {r.id: (rule_state(r, counts.get(r.id, 0)), counts.get(r.id, 0)) for r in rule_list}


def _state(view, context, model, name):
    states = g.get("rule_states") or {}
    if model.id not in states:
        states.update(rule_states([model]))
    return state_badge(*states[model.id])


def _device(view, context, model, name):
    if model.device is None:
        return Markup('<span class="text-muted">{}</span>').format(_("all devices in reach"))
    return Markup('<a href="{}">{}</a>').format(
        url_for("devices.details_view", id=model.device_id), model.device.name
    )


def channel_names(channel_ids: list[int] | None) -> str:
    """The names of a rule's channels (for its page: one query)."""
    if not channel_ids:
        return ""
    names = dict(
        db.session.execute(
            select(NotificationChannel.id, NotificationChannel.name).where(
                NotificationChannel.id.in_(channel_ids)
            )
        ).all()
    )
    return ", ".join(names.get(i, f"#{i}") for i in channel_ids)


def optional_id(value: Any) -> int | str:
    """A select's id, or "" for its empty choice."""
    if value in (None, "", "None"):
        return ""
    return int(value)


def device_choices(blank: str) -> list[SelectChoice]:
    admin = current_user.role is Role.admin
    return [SelectChoice("", blank)] + [
        SelectChoice(d.id, f"{d.name} · {d.owner.username}" if admin else d.name)
        for d in changeable_devices()
    ]


def channel_choices() -> list[SelectChoice]:
    query = channel_query_for(current_user, for_change=True).order_by(NotificationChannel.name)
    admin = current_user.role is Role.admin
    return [
        SelectChoice(c.id, f"{c.name} · {c.owner.username}" if admin else c.name)
        for c in db.session.execute(query).scalars()
    ]


def _command_fields(when: str, label, help_text) -> dict[str, Any]:
    return {
        f"{when}_action": StringField(
            label, validators=[Length(max=64)], description=help_text, render_kw={"size": 20}
        ),
        f"{when}_payload": JSONObjectField(
            _l("Its payload (JSON object)"),
            default=dict,
            render_kw={"rows": 2, "placeholder": "{}"},
            description=_l('Sent with the command, e.g. {"speed": 2}.'),
        ),
        f"{when}_device": SelectField(
            _l("Its device"),
            coerce=optional_id,
            default="",
            description=_l("Where the command goes; empty: the alert's device."),
        ),
    }


class RuleView(OwnerFormMixin, SecureModelView):
    column_list = (
        "name",
        "kind",
        "device",
        "condition",
        "severity",
        "enabled",
        "state",
        "owner",
    )
    column_details_list = (
        "id",
        "name",
        "kind",
        "device",
        "condition",
        "severity",
        "enabled",
        "state",
        "on_raise",
        "on_clear",
        "notify",
        "owner",
        "pending_since",
        "created_at",
        "updated_at",
    )
    column_export_list = (
        "id",
        "name",
        "kind",
        "device",
        "condition",
        "severity",
        "enabled",
        "owner",
        "created_at",
    )
    column_labels = {
        "id": _l("ID"),
        "name": _l("Name"),
        "kind": _l("Kind"),
        "device": _l("Device"),
        "condition": _l("Condition"),
        "severity": _l("Severity"),
        "enabled": _l("Enabled"),
        "state": _l("State"),
        "on_raise": _l("Command when raised"),
        "on_clear": _l("Command when cleared"),
        "notify": _l("Notify"),
        "owner": _l("Owner"),
        "pending_since": _l("Condition holds since"),
        "created_at": _l("Created"),
        "updated_at": _l("Updated"),
    }
    column_formatters = {
        "kind": lambda v, c, m, n: kind_name(m.kind),
        "device": _device,
        "condition": lambda v, c, m, n: rules.describe(m),
        "severity": lambda v, c, m, n: severity_badge(m.severity),
        "state": _state,
        "on_raise": lambda v, c, m, n: json.dumps(m.on_raise) if m.on_raise else "—",
        "on_clear": lambda v, c, m, n: json.dumps(m.on_clear) if m.on_clear else "—",
        "notify": lambda v, c, m, n: channel_names(m.notify) or "—",
    }
    column_formatters_export = {
        "kind": lambda v, c, m, n: m.kind.value,
        "severity": lambda v, c, m, n: m.severity.value,
        "device": lambda v, c, m, n: m.device.name if m.device else "",
        "condition": lambda v, c, m, n: rules.describe(m),
    }
    column_filter_labels = {"device.name": _l("Device name"), "owner.username": _l("Owner")}
    column_searchable_list = ("name", "metric")
    column_filters = ("kind", "severity", "enabled", "device.name", "owner.username")
    column_sortable_list = (
        "name",
        "kind",
        "severity",
        "enabled",
        ("device", "device.name"),
        ("owner", "owner.username"),
    )
    column_default_sort = ("name", False)
    details_template = "admin/rule_details.html"
    form_columns = FIELDS
    form_extra_fields = {
        "name": StringField(_l("Name"), validators=[InputRequired(), Length(max=100)]),
        "kind": SelectField(
            _l("Kind"),
            choices=[
                SelectChoice("threshold", _l("Threshold: a reading crosses a value")),
                SelectChoice("silence", _l("Silence: nothing heard from the device")),
                SelectChoice("command_failed", _l("Command failed: a command fails or expires")),
            ],
            default="threshold",
            description=_l(
                "What the rule watches for; only the fields of this kind are used. The kind "
                "cannot change once the rule is made."
            ),
            # portal.js shows only the chosen kind's fields (the server reads only those).
            render_kw={"data-fields-of": json.dumps(KIND_FIELDS)},
        ),
        "device_id": SelectField(
            _l("Device"),
            coerce=optional_id,
            default="",
            description=_l(
                "The device the rule watches. A command-failed rule may leave it empty: it "
                "then watches all devices in reach of the rule's owner."
            ),
        ),
        "metric": StringField(
            _l("Metric"),
            validators=[Length(max=64)],
            description=_l("The readings' metric, e.g. temperature."),
            render_kw={"placeholder": "temperature"},
        ),
        "op": SelectField(
            _l("Comparison"),
            choices=[
                SelectChoice(">", _l("> above")),
                SelectChoice(">=", _l(">= at or above")),
                SelectChoice("<", _l("< below")),
                SelectChoice("<=", _l("<= at or below")),
            ],
            default=">",
        ),
        "value": FloatField(
            _l("Value"),
            validators=[Optional()],
            description=_l('The value readings are compared with, e.g. 30 with "> above".'),
        ),
        "for_seconds": IntegerField(
            _l("For (seconds)"),
            default=0,
            validators=[Optional()],
            description=_l(
                "Alert when every reading has been past the value for this many seconds; "
                "0 = the first reading."
            ),
        ),
        "clear_value": FloatField(
            _l("Clears at"),
            validators=[Optional()],
            description=_l(
                "Optional: the alert clears only when a reading gets back past this value (e.g. "
                "above 30, clears at 27); empty: as soon as a reading is back on the other side "
                "of the value."
            ),
        ),
        "seconds": IntegerField(
            _l("Silent for (seconds)"),
            validators=[Optional()],
            description=_l(
                "Alert when nothing has been heard from the device for this many seconds "
                "(at least %(min)d); it clears when the device is heard from again.",
                min=rules.MIN_SILENCE_SECONDS,
            ),
        ),
        "severity": SelectField(
            _l("Severity"),
            choices=[
                SelectChoice("info", _l("info")),
                SelectChoice("warning", _l("warning")),
                SelectChoice("critical", _l("critical")),
            ],
            default="warning",
            description=_l("Shown with each alert; the dashboard lists critical alerts first."),
        ),
        "enabled": BooleanField(
            _l("Enabled"),
            default=True,
            description=_l("Disabling a rule resolves its open alerts."),
        ),
        "notify": SelectMultipleField(
            _l("Notify"),
            coerce=int,
            description=_l(
                "Channels told when an alert is raised and when it clears (hold Ctrl to "
                "choose several)."
            ),
        ),
        **_command_fields(
            "on_raise",
            _l("Command when raised"),
            _l("Optional: an action sent when the alert is raised, e.g. fan.on."),
        ),
        **_command_fields(
            "on_clear",
            _l("Command when cleared"),
            _l("Optional: an action sent when the alert clears, e.g. fan.off."),
        ),
    }

    # ---- row scope: an operator's own rules ---------------------------------------------------
    def scope(self, query):
        if access.sees_all(current_user):
            return query
        visible = rules.rule_query_for(current_user).with_only_columns(Rule.id)
        return query.filter(self.model.id.in_(visible))

    # ---- the list: each rule's state, for the whole page in one query -------------------------
    def get_list(self, page, sort_column, sort_desc, search, filters, execute=True, page_size=None):
        count, data = super().get_list(
            page, sort_column, sort_desc, search, filters, execute=execute, page_size=page_size
        )
        if execute:
            g.rule_states = rule_states(list(data))
        return count, data

    # ---- forms: the chosen kind's fields; the owner for admins -------------------------------
    def _prepare(self, form, kind: str | None):
        form.device_id.choices = device_choices(
            _("— all devices in reach (command failed only) —")
            if kind in (None, "command_failed")
            else "—"
        )
        for when in COMMANDS:
            form[f"{when}_device"].choices = device_choices(_("— the alert's device —"))
        form.notify.choices = channel_choices()
        if kind is not None:
            for name in ALL_KIND_FIELDS:
                if name not in KIND_FIELDS[kind]:
                    del form[name]
        return form

    def create_form(self, obj=None):
        form = self._prepare(super().create_form(obj), None)
        return self._prepare_owner(form, str(current_user.id))

    def edit_form(self, obj=None):
        form = super().edit_form(obj)
        if obj is None:
            return self._prepare_owner(form, None)
        del form.kind
        form = self._prepare(form, obj.kind.value)
        if request.method == "GET":
            for when in COMMANDS:
                spec = getattr(obj, when) or {}
                form[f"{when}_action"].data = spec.get("action") or ""
                form[f"{when}_payload"].data = spec.get("payload") or {}
                form[f"{when}_device"].data = spec.get("device_id") or ""
        return self._prepare_owner(form, str(obj.owner_id))

    # ---- changes through the service ----------------------------------------------------------
    def _fields(self, form, kind: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": form.name.data,
            "device_id": form.device_id.data or None,
            "severity": form.severity.data,
            "enabled": form.enabled.data,
            "notify": list(form.notify.data or []),
        }
        for name in KIND_FIELDS.get(kind, ()):
            data[name] = form[name].data
        if kind == "threshold":
            data["metric"] = (data["metric"] or "").strip() or None
            data["for_seconds"] = data["for_seconds"] or 0
        for when in COMMANDS:
            data[when] = _command(form, when)
        return data

    def service_create(self, form):
        kind = form.kind.data
        return _on_form_fields(
            lambda: rules.create_rule(
                current_user, kind=kind, owner=self._owner(form), **self._fields(form, kind)
            )
        )

    def service_update(self, form, model):
        fields = self._fields(form, model.kind.value)
        owner = self._owner(form)
        if owner is not None and owner.id != model.owner_id:
            fields["owner"] = owner
        return _on_form_fields(lambda: rules.update_rule(current_user, model, **fields))

    def service_delete(self, model):
        rules.delete_rule(current_user, model)

    def get_save_return_url(self, model, is_created=False):
        if is_created:
            return self.get_url(".details_view", id=model.id)
        return super().get_save_return_url(model, is_created)

    # ---- the rule's page: its state, its last alerts, enable or disable ----------------------
    def render(self, template, **kwargs):
        model = kwargs.get("model")
        if template == self.details_template and model is not None:
            kwargs["rule_alerts"] = alerts.list_alerts(current_user, rule_id=model.id, limit=20)
            kwargs["may_change"] = rules.may_change_rule(current_user, model)
            kwargs["alert_state"] = alert_state
            kwargs["alert_value"] = alert_value
        return super().render(template, **kwargs)

    @expose("/set-enabled/", methods=("POST",))
    def set_enabled_view(self):
        rule = self.get_one(request.args.get("id"))
        enabled = request.form.get("enabled") == "1"
        try:
            rules.set_rule_enabled(current_user, rule, enabled)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            if exc.status in (403, 404):
                abort(exc.status)
            flash(exc.message, "error")
        else:
            if enabled:
                flash(_("Rule %(name)s enabled.", name=rule.name), "success")
            else:
                flash(_("Rule %(name)s disabled.", name=rule.name), "success")
        return redirect(self.get_url(".details_view", id=rule.id))

    @action("enable", _l("Enable"))
    def action_enable(self, ids):
        self._set_enabled(ids, True)

    @action("disable", _l("Disable"), _l("Disable the selected rules? Their open alerts resolve."))
    def action_disable(self, ids):
        self._set_enabled(ids, False)

    def _set_enabled(self, ids, enabled: bool) -> None:
        count = 0
        try:
            for rule in self.selected(ids):
                if rules.may_change_rule(current_user, rule) and rule.enabled != enabled:
                    rules.set_rule_enabled(current_user, rule, enabled)
                    count += 1
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")
            return
        if enabled:
            flash(_("%(num)d rule(s) enabled.", num=count), "success")
        else:
            flash(_("%(num)d rule(s) disabled.", num=count), "success")


def _command(form, when: str) -> dict[str, Any] | None:
    """``on_raise`` / ``on_clear`` from its three fields; None when all are left empty."""
    action_text = (form[f"{when}_action"].data or "").strip()
    payload = form[f"{when}_payload"].data or {}
    device_id = form[f"{when}_device"].data or None
    if not action_text and not payload and device_id is None:
        return None
    return {"action": action_text or None, "payload": payload, "device_id": device_id}


def _form_field(name: str) -> str:
    """The form field a service's field name is shown beside (``on_raise.device_id`` is
    ``on_raise_device``)."""
    head, _dot, part = name.partition(".")
    if head in COMMANDS:
        return f"{head}_{ {'payload': 'payload', 'device_id': 'device'}.get(part, 'action') }"
    return name


def _on_form_fields(change):
    """Run ``change``; a complaint about ``on_raise.payload`` lands on ``on_raise_payload``."""
    try:
        return change()
    except InvalidInput as exc:
        fields: dict[str, str] = {}
        for name, message in exc.fields.items():
            target = _form_field(name)
            fields[target] = f"{fields[target]} {message}" if target in fields else message
        raise InvalidInput(exc.message, fields=fields) from None
