"""Admin views of what devices and schedules produce: commands and readings."""

from __future__ import annotations

import json

from flask import flash, url_for
from flask_admin.actions import action
from flask_admin.contrib.sqla.fields import QuerySelectField
from flask_admin.contrib.sqla.filters import FilterEqual
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup, escape
from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload
from wtforms import IntegerField, StringField
from wtforms.validators import DataRequired, InputRequired

from portal.admin.arguments import RefusesJunk
from portal.admin.base import JSONObjectField, SecureModelView, form_data
from portal.admin.keyset import KeysetListMixin
from portal.extensions import db
from portal.models import Alert, Command, CommandSource, Device, Rule
from portal.services import access, rules
from portal.services.commands import cancel_command, enqueue_command
from portal.services.errors import DomainError


def changeable_devices():
    """Device choices in forms: only devices the current user may change."""
    query = access.device_query_for(current_user, for_change=True).order_by(Device.name)
    return db.session.execute(query).scalars().all()


def drop_repeated_errors(form) -> None:
    """Show each of a field's errors once (a JSON field reports its parse error twice)."""
    for field in form:
        if isinstance(field.errors, list | tuple):
            field.errors = list(dict.fromkeys(field.errors))


def pretty_json(value) -> Markup:
    """A JSON value indented, for a details page."""
    if value is None:
        return Markup("—")
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    return Markup('<pre class="mb-0 small">%s</pre>') % text


def device_link(device: Device | None) -> Markup:
    """The device's name, linked to its page."""
    if device is None:
        return Markup("—")
    url = url_for("devices.details_view", id=device.id)
    return Markup('<a href="%s" data-testid="device-link">%s</a>') % (url, device.name)


def _schedule_link(view, context, model, name):
    if model.schedule is None:
        return Markup("—")
    url = url_for("schedules.details_view", id=model.schedule.id)
    return Markup('<a href="%s" data-testid="schedule-link">%s</a>') % (url, model.schedule.name)


def command_alert(command: Command) -> tuple[Alert, Rule | None] | None:
    """The alert whose raise or clear sent the command (if the user may see it), with its
    rule when the user may see that too."""
    alert = db.session.execute(
        select(Alert)
        .where(or_(Alert.raise_command_id == command.id, Alert.clear_command_id == command.id))
        .limit(1)
    ).scalar_one_or_none()
    if alert is None or not access.may_see_device(current_user, alert.device):
        return None
    rule = db.session.execute(
        rules.rule_query_for(current_user).where(Rule.id == alert.rule_id)
    ).scalar_one_or_none()
    return alert, rule


def _source(view, context, model, name):
    names = {"person": _("a person"), "schedule": _("a schedule"), "rule": _("a rule")}
    text = escape(names.get(model.source.value, model.source.value))
    if model.source is not CommandSource.rule:
        return text
    found = command_alert(model)
    if found is None:
        return text
    alert, rule = found
    alert_url = url_for("alerts.details_view", id=alert.id)
    parts = [text]
    if rule is not None:
        rule_url = url_for("rules.details_view", id=rule.id)
        parts.append(Markup('<a href="%s" data-testid="rule-link">%s</a>') % (rule_url, rule.name))
    parts.append(
        Markup('<a href="%s" data-testid="alert-link">%s</a>')
        % (alert_url, _("alert #%(id)s", id=alert.id))
    )
    return Markup(" · ").join(parts)


def _status_badge(view, context, model, name):
    colors = {
        "queued": "secondary",
        "delivered": "info",
        "succeeded": "success",
        "failed": "danger",
        "expired": "warning",
        "cancelled": "dark",
    }
    value = model.status.value
    return Markup(f'<span class="badge badge-{colors[value]}">{escape(value)}</span>')


SUGGESTED_DEVICE_NAMES = 1000


class DeviceNameEqual(RefusesJunk, FilterEqual):
    """The filter "device name equals" as a condition on the row's own device column:
    ``device_id = (the id of the device of that name)``. Through Flask-Admin's join PostgreSQL
    could not tell how many rows the device has, and read every one of them to sort them (a
    busy device's pages cost as much as its rows after the page); against the column it reads
    the (device_id, id) index in order, a page's worth. The id is looked up first and given
    as a number: behind a subquery the planner guesses an average device, and on partitioned
    readings it then sorted all of a busy device's rows (100,000: 35 ms) instead of merging
    each day's index in order."""

    def apply(self, query, value, alias=None):
        device = db.session.execute(select(Device.id).where(Device.name == value)).scalar()
        return query.filter(self.column == (device if device is not None else -1))


class DeviceNameMixin:
    """Load each row's device name with a second small query instead of a join, so a deep
    page does not join devices for every row the OFFSET skips; filter by a device's name
    without a join either (DeviceNameEqual)."""

    column_auto_select_related = False
    device_column: str

    def scaffold_filters(self, name):
        found = super().scaffold_filters(name)
        if name != "device.name" or not found:
            return found
        return [self._by_device_column(f) if isinstance(f, FilterEqual) else f for f in found]

    def _by_device_column(self, found: FilterEqual) -> DeviceNameEqual:
        equal = DeviceNameEqual(getattr(self.model, self.device_column), found.name)
        equal.url_name = getattr(found, "url_name", found.name)  # links name it so already
        return equal

    def get_query(self):
        return (
            super()
            .get_query()
            .options(selectinload(self.model.device).load_only(Device.id, Device.name))
        )

    def filter_suggestions(self) -> dict[str, list[str]]:
        """What the list's filter boxes suggest as one types (portal_list.html draws each as a
        ``<datalist>``): the names of the devices the user may see, for the device filter."""
        names = (
            access.device_query_for(current_user)
            .with_only_columns(Device.name)
            .order_by(Device.name)
            .limit(SUGGESTED_DEVICE_NAMES)
        )
        # The filter keeps the URL name Flask-Admin gave it ("device / Devices / Name").
        return {"device_devices_name": list(db.session.scalars(names))}


def _device_cell(view, context, model, name) -> Markup:
    return device_link(model.device)


class CommandView(KeysetListMixin, DeviceNameMixin, SecureModelView):
    device_column = "device_id"
    simple_list_pager = True
    count_cap = 10_000
    supports_edit = False  # a command is immutable once sent; cancel it instead
    details_template = "admin/command_details.html"
    column_list = (
        "id",
        "device",
        "action",
        "status",
        "source",
        "attempts",
        "created_at",
        "expires_at",
        "finished_at",
    )
    column_details_list = (
        "id",
        "device",
        "action",
        "payload",
        "status",
        "source",
        "schedule",
        "due_at",
        "created_by",
        "attempts",
        "created_at",
        "delivered_at",
        "expires_at",
        "finished_at",
        "reason",
        "result",
    )
    column_export_list = column_details_list
    column_filters = (
        "status",
        "source",
        "action",
        "created_at",
        "device.name",
        "schedule_id",
    )
    column_searchable_list = ("action",)
    # Only orders an index serves, so every page is a range read (portal/admin/keyset.py);
    # the filters pick a status or an action.
    column_sortable_list = ("id", "created_at")
    column_default_sort = ("id", True)
    column_formatters = {"status": _status_badge, "device": _device_cell}
    column_formatters_export: dict = {}  # plain values in a CSV, not the page's markup
    column_formatters_detail = {
        "status": _status_badge,
        "device": _device_cell,
        "schedule": _schedule_link,
        "source": _source,
        "payload": lambda v, c, m, n: pretty_json(m.payload),
        "result": lambda v, c, m, n: pretty_json(m.result),
    }
    column_labels = {
        "id": _l("ID"),
        "device": _l("Device"),
        "action": _l("Action"),
        "payload": _l("Payload"),
        "status": _l("Status"),
        "source": _l("Source"),
        "schedule": _l("Schedule"),
        "created_by": _l("Created by"),
        "attempts": _l("Attempts"),
        "reason": _l("Reason"),
        "result": _l("Result"),
        "created_at": _l("Created"),
        "expires_at": _l("Expires"),
        "finished_at": _l("Finished"),
        "delivered_at": _l("Delivered"),
        "due_at": _l("Due"),
        "device_id": _l("Device ID"),
        "schedule_id": _l("Schedule ID"),
    }
    column_filter_labels = {"device.name": _l("Device name")}
    form_columns = ("device", "action", "payload", "expires_in")
    form_extra_fields = {
        "device": QuerySelectField(
            _l("Device"),
            query_factory=changeable_devices,
            allow_blank=True,  # never a device the user did not choose
            blank_text=_l("— choose a device —"),
            validators=[DataRequired()],
        ),
        "action": StringField(
            _l("Action"),
            validators=[InputRequired()],
            description=_l("e.g. %(examples)s", examples="relay.on, relay.off, reboot"),
        ),
        "payload": JSONObjectField(_l("Payload (JSON object)"), default=dict),
        # The range is the service's check: NumberRange overflows on a 400-digit number.
        "expires_in": IntegerField(
            _l("Expires in (seconds)"), default=3600, validators=[InputRequired()]
        ),
    }

    def validate_form(self, form) -> bool:
        valid = super().validate_form(form)
        drop_repeated_errors(form)
        return valid

    def service_create(self, form):
        data = form_data(form, "device", "action", "payload", "expires_in")
        return enqueue_command(
            current_user, data["device"], data["action"], data["payload"], data["expires_in"]
        )

    def service_delete(self, model):
        cancel_command(current_user, model)

    supports_delete = False

    @action(
        "cancel",
        _l("Cancel"),
        _l("Cancel the selected commands that are still queued or delivered?"),
    )
    def action_cancel(self, ids):
        commands = self.selected(ids)
        done = 0
        for command in commands:
            if command.status.is_open and access.may_change_device(current_user, command.device):
                try:
                    cancel_command(current_user, command)
                    done += 1
                except DomainError:
                    continue
        db.session.commit()
        flash(_("%(num)d command(s) cancelled.", num=done), "success")


class ReadingView(KeysetListMixin, DeviceNameMixin, SecureModelView):
    device_column = "device_id"
    simple_list_pager = True
    count_cap = 10_000
    supports_create = supports_edit = supports_delete = False
    details_template = "admin/reading_details.html"
    column_list = ("id", "device", "metric", "value", "recorded_at")
    column_details_list = column_list
    column_export_list = column_list
    column_filters = ("device.name", "metric", "recorded_at")
    # Only orders an index serves (see CommandView); the filters pick a metric. Newest
    # measured first: on PostgreSQL the readings are partitioned by that time, so a page reads
    # the newest week's partition alone, where an order by id would merge every week's.
    column_sortable_list = ("id", "recorded_at")
    column_default_sort = ("recorded_at", True)
    column_formatters = {"device": _device_cell}
    column_formatters_export: dict = {}  # plain values in a CSV, not the page's markup
    column_formatters_detail = {"device": _device_cell}
    column_labels = {
        "id": _l("ID"),
        "device": _l("Device"),
        "metric": _l("Metric"),
        "value": _l("Value"),
        "recorded_at": _l("Recorded"),
        "device_id": _l("Device ID"),
    }
    column_filter_labels = {"device.name": _l("Device name")}
    page_size = 50
