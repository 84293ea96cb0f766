"""Admin view of devices: create (token shown once), edit, rotate token, delete."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, request
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.babel import lazy_gettext as admin_lazy_gettext
from flask_admin.contrib.sqla.filters import BaseSQLAFilter
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import select
from wtforms import BooleanField, IntegerField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional

from portal.admin.alerts import alert_value, severity_badge, state_badge
from portal.admin.base import (
    JSONObjectField,
    OwnerFormMixin,
    SecureModelView,
    form_data,
    object_history,
    show_domain_error,
    show_token_once,
    viewer_zone,
)
from portal.admin.live import live_answer, live_poller
from portal.admin.onboarding import connect_panel, remember_token
from portal.admin.records import drop_repeated_errors
from portal.admin.rules import rule_states
from portal.admin.rules import state_badge as rule_state_badge
from portal.extensions import db
from portal.models import Alert, Command, Device, MqttCredentialChange, Rule, Schedule, utcnow
from portal.services import access, alerts, mqtt_access, rules
from portal.services import schedules as schedule_service
from portal.services.charts import RANGES, reading_series
from portal.services.commands import enqueue_command
from portal.services.devices import (
    KINDS,
    create_device,
    delete_device,
    rotate_device_token,
    update_device,
)
from portal.services.errors import DomainError
from portal.services.fleet import (
    DEVICE_STATUSES,
    device_connects_over,
    device_status,
    device_status_condition,
)

EDITABLE = ("name", "kind", "location", "description", "enabled", "readings_retention_days")
STATUS_NAMES = {"online": _l("online"), "stale": _l("stale"), "never": _l("never")}
STATUS_TONES = {"online": "success", "stale": "warning", "never": "secondary"}


def status_cell(device: Device) -> Markup:
    """The device's status by the dashboard's rule (fleet.device_status), in the element the
    device list's poller keeps live."""
    status = device_status(device, utcnow(), current_app.config["DEVICE_ONLINE_SECONDS"])
    return Markup(
        '<span id="device-status-%d"><span class="badge badge-%s" data-testid="device-status">'
        "%s</span></span>"
    ) % (device.id, STATUS_TONES[status], STATUS_NAMES[status])


def _status_badge(view, context, model, name) -> Markup:
    return status_cell(model)


# The most rows a device list's poller asks about (the largest page size, with room).
LIVE_STATUS_ROWS = 500


def _name_link(view, context, model, name) -> Markup:
    """The device's name, linked to its page (which links back to this list)."""
    url = context.resolve("row_url")(".details_view", model.id)
    return Markup('<a href="%s" data-testid="device-link">%s</a>') % (url, model.name)


class DeviceStatusFilter(BaseSQLAFilter):
    """Online, stale or never seen, by the dashboard's rule (fleet.device_status_condition);
    its URL argument is ``status_equals`` (the dashboard's cards link to it)."""

    def __init__(self) -> None:
        options = [(status, STATUS_NAMES[status]) for status in DEVICE_STATUSES]
        super().__init__(Device.last_seen_at, _l("Status"), options=options)

    def validate(self, value) -> bool:
        return value in DEVICE_STATUSES

    def apply(self, query, value, alias=None):
        online_seconds = current_app.config["DEVICE_ONLINE_SECONDS"]
        return query.filter(device_status_condition(value, utcnow(), online_seconds))

    def operation(self):
        return admin_lazy_gettext("equals")


class SendCommandForm(FlaskForm):
    action = StringField(
        _l("Action"),
        validators=[InputRequired(), Length(max=64)],
        render_kw={"placeholder": "relay.on"},
    )
    payload = JSONObjectField(
        _l("Payload (JSON object)"), default=dict, render_kw={"rows": 2, "placeholder": "{}"}
    )
    # The range is the service's check: WTForms' NumberRange overflows on a 400-digit number.
    expires_in = IntegerField(_l("Expires in (s)"), default=3600, validators=[InputRequired()])

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        drop_repeated_errors(self)
        return valid


def mqtt_context(device: Device) -> dict:
    """The device's MQTT side for its page: shown when MQTT is configured or the device has
    used it; its login, topic root, retained online status and whether the broker is in step."""
    prefix = current_app.config["MQTT_TOPIC_PREFIX"]
    context = {
        "shown": bool(current_app.config["MQTT_URL"]) or device.mqtt_seen_at is not None,
        "connects_over": device_connects_over(device),
        "username": mqtt_access.username(device.id),
        "topic_root": mqtt_access.topic_root(prefix, device.id),
        "online": device.mqtt_online,
        "credentials": mqtt_access.state(device.id),
        "pending_since": None,
        "last_error": "",
    }
    if context["credentials"] == mqtt_access.PENDING:
        changes = db.session.execute(
            select(MqttCredentialChange.created_at, MqttCredentialChange.last_error)
            .where(MqttCredentialChange.device_id == device.id)
            .order_by(MqttCredentialChange.id)
        ).all()
        if changes:
            context["pending_since"] = changes[0].created_at
            context["last_error"] = changes[-1].last_error or ""
    return context


def device_alerts(device: Device, resolved: int = 10) -> list[Alert]:
    """The device's open alerts, then its last resolved ones."""
    open_ones = db.session.execute(
        select(Alert)
        .where(Alert.device_id == device.id, Alert.state.in_(alerts.OPEN))
        .order_by(Alert.id.desc())
    ).scalars()
    last = alerts.list_alerts(current_user, state="resolved", device_id=device.id, limit=resolved)
    return [*open_ones, *last]


def device_rules(device: Device) -> list[tuple[Rule, Markup]]:
    """The rules that watch the device (the user may see), each with its state."""
    found = list(
        db.session.execute(
            rules.rule_query_for(current_user)
            .where(Rule.device_id == device.id)
            .order_by(Rule.name)
        ).scalars()
    )
    states = rule_states(found)
    return [(rule, rule_state_badge(*states[rule.id])) for rule in found]


def device_live_context(device: Device) -> dict:
    """What the device page's live parts show (portal/templates/admin/parts/device_*.html):
    its status and connection, its last commands, its alerts."""
    now = utcnow()
    commands = (
        db.session.execute(
            select(Command)
            .where(Command.device_id == device.id)
            .order_by(Command.id.desc())
            .limit(20)
        )
        .scalars()
        .all()
    )
    return {
        "model": device,
        "status": device_status(device, now, current_app.config["DEVICE_ONLINE_SECONDS"]),
        "commands": commands,
        "may_change": access.may_change_device(current_user, device),
        "mqtt": mqtt_context(device),
        "device_alerts": device_alerts(device),
        "alert_state": state_badge,
        "alert_value": alert_value,
        "severity_badge": severity_badge,
    }


LIVE_PARTS = ("device_summary", "device_commands", "device_alerts")


def device_page_context(
    device: Device, range_key: str, command_form: SendCommandForm | None = None
) -> dict:
    now = utcnow()
    schedules = (
        db.session.execute(
            select(Schedule).where(Schedule.device_id == device.id).order_by(Schedule.name)
        )
        .scalars()
        .all()
    )
    return {
        **device_live_context(device),
        "schedules": [
            (
                s,
                schedule_service.next_fire_times(s, 5, now) if s.enabled else [],
                schedule_service.describe(s),
            )
            for s in schedules
        ],
        "history": object_history(device, 20),
        "chart": reading_series(device.id, range_key, now),
        "ranges": list(RANGES),
        "command_form": command_form or SendCommandForm(formdata=None),
        "viewer_zone": str(viewer_zone()),  # the chart's time axis is in it too
        "connect": connect_panel(device),
        "device_rules": device_rules(device),
        "describe": rules.describe,
    }


class DeviceView(OwnerFormMixin, SecureModelView):
    device_column = "id"
    list_template = "admin/device_list.html"
    column_list = (
        "name",
        "status",
        "kind",
        "location",
        "owner",
        "enabled",
        "firmware",
        "last_seen_at",
        "created_at",
    )
    column_details_list = (
        "id",
        "name",
        "kind",
        "location",
        "description",
        "owner",
        "enabled",
        "firmware",
        "token_prefix",
        "last_seen_at",
        "http_seen_at",
        "mqtt_seen_at",
        "mqtt_online",
        "created_at",
        "updated_at",
    )
    column_export_list = column_details_list
    column_labels = {
        "id": _l("ID"),
        "name": _l("Name"),
        "kind": _l("Kind"),
        "location": _l("Location"),
        "description": _l("Description"),
        "owner": _l("Owner"),
        "enabled": _l("Enabled"),
        "firmware": _l("Firmware"),
        "token_prefix": _l("Token starts with"),
        "last_seen_at": _l("Last seen"),
        "http_seen_at": _l("Last heard over HTTP"),
        "mqtt_seen_at": _l("Last heard over MQTT"),
        "mqtt_online": _l("Online over MQTT"),
        "created_at": _l("Created"),
        "updated_at": _l("Updated"),
        "status": _l("Status"),
    }
    column_formatters = {"name": _name_link, "status": _status_badge}
    column_formatters_export: dict = {}  # the CSV has plain names
    column_filter_labels = {"owner.username": _l("Owner")}
    column_searchable_list = ("name", "location", "kind")
    column_filters = (
        DeviceStatusFilter(),
        "kind",
        "enabled",
        "location",
        "last_seen_at",
        "owner.username",
    )
    column_sortable_list = (
        "name",
        "kind",
        "location",
        "enabled",
        "firmware",
        "last_seen_at",
        "created_at",
        ("owner", "owner.username"),
    )
    column_default_sort = ("name", False)
    form_columns = (
        "name",
        "kind",
        "location",
        "description",
        "enabled",
        "readings_retention_days",
    )
    details_template = "admin/device_details.html"
    form_extra_fields = {
        "name": StringField(_l("Name"), validators=[InputRequired(), Length(max=100)]),
        "kind": StringField(
            _l("Kind"),
            default="generic",
            description=_l("e.g. %(examples)s", examples=", ".join(KINDS)),
            validators=[Length(max=32)],
        ),
        "location": StringField(_l("Location"), validators=[Length(max=200)]),
        "description": TextAreaField(_l("Description"), validators=[Length(max=5000)]),
        "enabled": BooleanField(_l("Enabled"), default=True),
        # The range is the service's check (services/retention.check_days).
        "readings_retention_days": IntegerField(
            _l("Keep readings (days)"),
            validators=[Optional()],
            description=_l("Empty: the installation's default. 0: keep them forever."),
        ),
    }

    def create_form(self, obj=None):
        form = super().create_form(obj)
        return self._prepare_owner(form, str(current_user.id))

    def edit_form(self, obj=None):
        form = super().edit_form(obj)
        return self._prepare_owner(form, str(obj.owner_id) if obj is not None else None)

    def service_create(self, form):
        device, token = create_device(
            current_user, owner=self._owner(form), **form_data(form, *EDITABLE)
        )
        db.session.flush()
        self._new_token = (device.name, token)
        return device

    def after_model_change(self, form, model, is_created):
        if is_created and getattr(self, "_new_token", None):
            show_token_once(*self._new_token)
            remember_token(model.id, self._new_token[1])
            self._new_token = None

    def service_update(self, form, model):
        fields = form_data(form, *EDITABLE)
        owner = self._owner(form)
        if owner is not None and owner.id != model.owner_id:
            fields["owner"] = owner
        return update_device(current_user, model, **fields)

    def service_delete(self, model):
        delete_device(current_user, model)

    def get_save_return_url(self, model, is_created=False):
        if is_created:
            return self.get_url(".details_view", id=model.id)
        return super().get_save_return_url(model, is_created)

    @expose("/live/")
    def live_view(self):
        """The device page's live parts, for its poller (portal/admin/live.py)."""
        device = self.get_one(request.args.get("id"))
        context = device_live_context(device)
        parts = [self.render(f"admin/parts/{name}.html", **context) for name in LIVE_PARTS]
        # A page that shows the "connect it" panel asks to hear when the device reports.
        connected = request.args.get("connect") == "1" and device.last_seen_at is not None
        parts.append(
            self.render("admin/parts/device_connected.html", **context) if connected else ""
        )
        return live_answer(parts)

    @expose("/live-status/")
    def live_status_view(self):
        """The status cells of the listed devices in the user's reach, for the list's poller."""
        ids = request.args.get("ids", "").split(",")[:LIVE_STATUS_ROWS]
        found = sorted(self.selected(ids), key=lambda device: device.id)
        return live_answer([status_cell(device) for device in found])

    def render(self, template, **kwargs):
        if template == self.list_template and "data" in kwargs:
            ids = [device.id for device in kwargs["data"]]
            kwargs["status_poller"] = live_poller(
                self.get_url(".live_status_view", ids=",".join(map(str, ids))),
                [f"device-status-{i}" for i in ids],
            )
        if template == self.details_template and "model" in kwargs:
            kwargs.update(
                device_page_context(
                    kwargs["model"],
                    request.args.get("range", "24h"),
                    kwargs.pop("command_form", None),
                )
            )
        return super().render(template, **kwargs)

    def _command_refused(self, device: Device, form: SendCommandForm):
        """The device page again, the typed command kept and each error beside its field."""
        flash(_("Command not sent: see the marked fields."), "error")
        return self.render(
            self.details_template,
            model=device,
            details_columns=self._details_columns,
            get_value=self.get_detail_value,
            return_url=self.get_url(".index_view"),
            command_form=form,
        )

    @expose("/send-command/", methods=("POST",))
    def send_command_view(self):
        device = self.get_one(request.args.get("id"))
        form = SendCommandForm()
        if not form.validate_on_submit():
            return self._command_refused(device, form)
        try:
            command = enqueue_command(
                current_user,
                device,
                form.action.data.strip(),
                form.payload.data,
                form.expires_in.data,
            )
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            if exc.status in (403, 404):
                abort(exc.status)
            show_domain_error(form, exc)
            return self._command_refused(device, form)
        else:
            flash(
                _(
                    "Command #%(id)s %(action)s queued for %(device)s.",
                    id=command.id,
                    action=command.action,
                    device=device.name,
                ),
                "success",
            )
        return redirect(self.get_url(".details_view", id=device.id))

    @expose("/rotate-token/", methods=("POST",))
    def rotate_token_view(self):
        device = self.get_one(request.args.get("id"))
        try:
            token = rotate_device_token(current_user, device)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            abort(exc.status)
        show_token_once(device.name, token)
        remember_token(device.id, token)
        return redirect(self.get_url(".details_view", id=device.id))

    @action(
        "rotate_tokens",
        _l("Rotate tokens"),
        _l("Give each selected device a new token? Their old tokens stop working at once."),
    )
    def action_rotate_tokens(self, ids):
        devices = self.selected(ids)
        shown = []
        for device in devices:
            if access.may_change_device(current_user, device):
                shown.append((device.name, rotate_device_token(current_user, device)))
        db.session.commit()
        for name, token in shown:
            show_token_once(name, token)

    @action("send_command", _l("Send a command"))
    def action_send_command(self, ids):
        chosen = ",".join(
            str(d.id) for d in self.selected(ids) if access.may_change_device(current_user, d)
        )
        return redirect(self.get_url(".bulk_command_view", ids=chosen))

    @expose("/bulk-command/", methods=("GET", "POST"))
    def bulk_command_view(self):
        """One command to many devices: the same action, payload and expiry for each."""
        wanted = (request.values.get("ids") or "").split(",")
        devices = [d for d in self.selected(wanted) if access.may_change_device(current_user, d)]
        if not self.can_edit:
            abort(403)
        form = SendCommandForm()
        if devices and form.validate_on_submit():
            try:
                for device in devices:
                    enqueue_command(
                        current_user,
                        device,
                        form.action.data.strip(),
                        form.payload.data,
                        form.expires_in.data,
                    )
                db.session.commit()
            except DomainError as exc:
                db.session.rollback()
                show_domain_error(form, exc)
            else:
                flash(
                    _(
                        "%(action)s queued for %(num)d device(s).",
                        action=form.action.data.strip(),
                        num=len(devices),
                    ),
                    "success",
                )
                return redirect(self.get_url(".index_view"))
        return self.render(
            "admin/bulk_command.html",
            form=form,
            devices=devices,
            ids=",".join(str(d.id) for d in devices),
        )

    @action(
        "disable",
        _l("Disable"),
        _l("Disable the selected devices? They will get 401 until enabled."),
    )
    def action_disable(self, ids):
        self._set_enabled(ids, False)

    @action("enable", _l("Enable"))
    def action_enable(self, ids):
        self._set_enabled(ids, True)

    def _set_enabled(self, ids, enabled: bool):
        devices = self.selected(ids)
        count = 0
        for device in devices:
            if access.may_change_device(current_user, device) and device.enabled != enabled:
                update_device(current_user, device, enabled=enabled)
                count += 1
        db.session.commit()
        if enabled:
            flash(_("%(num)d device(s) enabled.", num=count), "success")
        else:
            flash(_("%(num)d device(s) disabled.", num=count), "success")
