"""Admin views of what devices and schedules produce: commands and readings."""

from __future__ import annotations

from flask import flash
from flask_admin.actions import action
from flask_admin.contrib.sqla.fields import QuerySelectField
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup, escape
from sqlalchemy.orm import selectinload
from wtforms import IntegerField, StringField
from wtforms.validators import InputRequired, NumberRange

from portal.admin.base import JSONObjectField, SecureModelView, form_data
from portal.extensions import db
from portal.models import Device
from portal.services import access
from portal.services.commands import MAX_EXPIRES_IN, cancel_command, enqueue_command
from portal.services.errors import DomainError


def changeable_devices():
    """Device choices in forms: only devices the current user may change."""
    query = access.device_query_for(current_user, for_change=True).order_by(Device.name)
    return db.session.execute(query).scalars().all()


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


class DeviceNameMixin:
    """Load each row's device name with a second small query instead of a join, so a deep
    page does not join devices for every row the OFFSET skips."""

    column_auto_select_related = False

    def get_query(self):
        return (
            super()
            .get_query()
            .options(selectinload(self.model.device).load_only(Device.id, Device.name))
        )


class CommandView(DeviceNameMixin, SecureModelView):
    device_column = "device_id"
    simple_list_pager = True
    count_cap = 10_000
    supports_edit = False  # a command is immutable once sent; cancel it instead
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
    column_filters = ("status", "source", "action", "created_at", "device_id", "device.name")
    column_searchable_list = ("action",)
    column_sortable_list = ("id", "action", "status", "created_at", "expires_at", "attempts")
    column_default_sort = ("id", True)
    column_formatters = {"status": _status_badge}
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
    }
    column_filter_labels = {"device.name": _l("Device name")}
    form_columns = ("device", "action", "payload", "expires_in")
    form_extra_fields = {
        "device": QuerySelectField(
            _l("Device"),
            query_factory=changeable_devices,
            validators=[InputRequired()],
            allow_blank=False,
        ),
        "action": StringField(
            _l("Action"),
            validators=[InputRequired()],
            description=_l("e.g. %(examples)s", examples="relay.on, relay.off, reboot"),
        ),
        "payload": JSONObjectField(_l("Payload (JSON object)"), default=dict),
        "expires_in": IntegerField(
            _l("Expires in (seconds)"), default=3600, validators=[NumberRange(1, MAX_EXPIRES_IN)]
        ),
    }

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


class ReadingView(DeviceNameMixin, SecureModelView):
    device_column = "device_id"
    simple_list_pager = True
    count_cap = 10_000
    supports_create = supports_edit = supports_delete = False
    can_view_details = False
    column_list = ("id", "device", "metric", "value", "recorded_at")
    column_export_list = column_list
    column_filters = ("metric", "recorded_at", "device_id", "device.name")
    column_sortable_list = ("id", "metric", "value", "recorded_at")
    column_default_sort = ("id", True)
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
