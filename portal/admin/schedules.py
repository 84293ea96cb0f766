"""Admin view of schedules: one form for cron, interval, one-off and sun schedules."""

from __future__ import annotations

from flask import flash, request
from flask_admin.actions import action
from flask_admin.contrib.sqla.fields import QuerySelectField
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup, escape
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    FloatField,
    IntegerField,
    SelectField,
    StringField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from portal.admin.base import JSONObjectField, SecureModelView
from portal.admin.records import changeable_devices
from portal.extensions import db
from portal.services import access
from portal.services import schedules as service
from portal.services.errors import DomainError, InvalidInput

FIELDS = (
    "name",
    "device",
    "action",
    "payload",
    "cron",
    "interval_seconds",
    "run_at",
    "sun_event",
    "sun_offset_minutes",
    "sun_latitude",
    "sun_longitude",
    "timezone",
    "enabled",
    "start_at",
    "end_at",
    "misfire_grace_seconds",
    "command_ttl_seconds",
)
# The form's fields for the service's ``sun`` object, and the other way for its errors.
SUN_FIELDS = {
    "sun_event": "event",
    "sun_offset_minutes": "offset_minutes",
    "sun_latitude": "latitude",
    "sun_longitude": "longitude",
}
SUN_ERRORS = {"sun": "sun_event", **{f"sun.{part}": name for name, part in SUN_FIELDS.items()}}
LOCAL_HELP = _l("In the schedule's time zone.")


def _local(label) -> DateTimeLocalField:
    return DateTimeLocalField(
        label, format="%Y-%m-%dT%H:%M", validators=[Optional()], description=LOCAL_HELP
    )


def _in_words(view, context, model, name):
    return service.describe(model)


def _upcoming(view, context, model, name):
    """The next five fire times, in UTC and in the schedule's own zone."""
    times = service.next_fire_times(model, 5) if model.enabled else []
    if not times:
        return "—"
    rows = "".join(
        f"<tr><td>{t:%Y-%m-%d %H:%M} UTC</td>"
        f"<td>{escape(service.to_local(t, model.timezone).strftime('%Y-%m-%d %H:%M'))} "
        f"{escape(model.timezone)}</td></tr>"
        for t in times
    )
    return Markup(f'<table class="table table-sm mb-0" data-testid="upcoming">{rows}</table>')


class ScheduleView(SecureModelView):
    device_column = "device_id"
    column_list = (
        "name",
        "device",
        "action",
        "kind",
        "enabled",
        "timezone",
        "next_fire_at",
        "last_fire_at",
        "fire_count",
        "skipped_count",
    )
    column_details_list = (
        "id",
        "name",
        "device",
        "action",
        "payload",
        "kind",
        "in_words",
        "upcoming",
        "cron",
        "interval_seconds",
        "run_at",
        *SUN_FIELDS,
        "timezone",
        "enabled",
        "start_at",
        "end_at",
        "misfire_grace_seconds",
        "command_ttl_seconds",
        "next_fire_at",
        "last_fire_at",
        "fire_count",
        "skipped_count",
        "created_at",
        "updated_at",
    )
    column_export_list = tuple(c for c in column_details_list if c != "upcoming")
    column_formatters = {"in_words": _in_words, "upcoming": _upcoming}
    column_formatters_export = {"in_words": lambda v, c, m, n: service.describe(m)}
    column_labels = {
        "id": _l("ID"),
        "name": _l("Name"),
        "device": _l("Device"),
        "action": _l("Action"),
        "payload": _l("Payload"),
        "kind": _l("Kind"),
        "in_words": _l("When"),
        "upcoming": _l("Next five runs"),
        "cron": _l("Cron"),
        "interval_seconds": _l("Interval (s)"),
        "run_at": _l("Run once at"),
        "sun_event": _l("Sun event"),
        "sun_offset_minutes": _l("Minutes after the event"),
        "sun_latitude": _l("Latitude"),
        "sun_longitude": _l("Longitude"),
        "timezone": _l("Time zone"),
        "enabled": _l("Enabled"),
        "start_at": _l("Start at"),
        "end_at": _l("End at"),
        "misfire_grace_seconds": _l("Misfire grace (s)"),
        "command_ttl_seconds": _l("Command expires after (s)"),
        "next_fire_at": _l("Next run"),
        "last_fire_at": _l("Last run"),
        "fire_count": _l("Fired"),
        "skipped_count": _l("Skipped"),
        "created_at": _l("Created"),
        "updated_at": _l("Updated"),
    }
    column_filter_labels = {"device.name": _l("Device name")}
    column_searchable_list = ("name", "action")
    column_filters = ("kind", "enabled", "timezone", "next_fire_at", "device.name")
    column_sortable_list = (
        "name",
        "action",
        "kind",
        "enabled",
        "next_fire_at",
        "last_fire_at",
        "fire_count",
    )
    column_default_sort = ("next_fire_at", False)
    form_columns = FIELDS
    form_extra_fields = {
        "name": StringField(_l("Name"), validators=[InputRequired(), Length(max=100)]),
        "device": QuerySelectField(
            _l("Device"),
            query_factory=changeable_devices,
            validators=[InputRequired()],
            allow_blank=False,
        ),
        "action": StringField(
            _l("Action"),
            validators=[InputRequired()],
            description=_l("e.g. %(examples)s", examples="relay.on"),
        ),
        "payload": JSONObjectField(_l("Payload (JSON object)"), default=dict),
        "cron": StringField(
            _l("Cron"),
            validators=[Optional()],
            description=_l(
                "Five fields, e.g. 0 7 * * 1-5 (weekdays at 07:00). "
                "Fill exactly one of cron, interval, run at or sun event."
            ),
        ),
        "interval_seconds": IntegerField(
            _l("Interval (seconds)"), validators=[Optional(), NumberRange(min=1)]
        ),
        "run_at": _local(_l("Run once at")),
        "sun_event": SelectField(
            _l("Sun event"),
            choices=[
                SelectChoice("", "—"),
                SelectChoice("sunrise", _l("Sunrise")),
                SelectChoice("sunset", _l("Sunset")),
                SelectChoice("dawn", _l("Dawn (civil twilight)")),
                SelectChoice("dusk", _l("Dusk (civil twilight)")),
            ],
            coerce=lambda value: value or "",
            default="",
            description=_l(
                "Fires once a day at this event plus the minutes below, at the place below. "
                "Days without it (polar day or night) are skipped; a day is a day in the "
                "schedule's time zone."
            ),
            # portal.js shows these fields only while an event is chosen.
            render_kw={
                "data-reveals": " ".join(name for name in SUN_FIELDS if name != "sun_event")
            },
        ),
        "sun_offset_minutes": IntegerField(
            _l("Minutes after the event"),
            default=0,
            validators=[Optional()],
            description=_l("Negative: before it, e.g. -30; from -720 to 720."),
        ),
        "sun_latitude": FloatField(
            _l("Latitude"),
            validators=[Optional()],
            description=_l("Degrees, north positive, e.g. 52.52"),
        ),
        "sun_longitude": FloatField(
            _l("Longitude"),
            validators=[Optional()],
            description=_l("Degrees, east positive, e.g. 13.40"),
        ),
        "timezone": StringField(
            _l("Time zone"), default="UTC", description=_l("IANA name, e.g. Europe/Berlin")
        ),
        "enabled": BooleanField(_l("Enabled"), default=True),
        "start_at": _local(_l("Start at")),
        "end_at": _local(_l("End at")),
        "misfire_grace_seconds": IntegerField(
            _l("Misfire grace (seconds)"), default=300, validators=[NumberRange(min=0)]
        ),
        "command_ttl_seconds": IntegerField(
            _l("Command expires after (seconds)"), default=3600, validators=[NumberRange(min=1)]
        ),
    }

    def edit_form(self, obj=None):
        form = super().edit_form(obj)
        if obj is not None and request.method == "GET":
            for name in ("run_at", "start_at", "end_at"):
                value = getattr(obj, name)
                getattr(form, name).data = service.to_local(value, obj.timezone)
        return form

    def _fields(self, form) -> dict:
        data = {name: getattr(form, name).data for name in FIELDS if name not in SUN_FIELDS}
        data["cron"] = (data["cron"] or "").strip() or None
        for name in ("run_at", "start_at", "end_at"):
            data[name] = service.from_local(data[name], data["timezone"], field=name)
        sun = {part: getattr(form, name).data for name, part in SUN_FIELDS.items()}
        data["sun"] = sun if sun["event"] else None
        return data

    def service_create(self, form):
        return _on_form_fields(lambda: service.create_schedule(current_user, **self._fields(form)))

    def service_update(self, form, model):
        return _on_form_fields(
            lambda: service.update_schedule(current_user, model, **self._fields(form))
        )

    def service_delete(self, model):
        service.delete_schedule(current_user, model)

    def _selected(self, ids):
        rows = self.selected(ids)
        return [s for s in rows if access.may_change_device(current_user, s.device)]

    @action("enable", _l("Enable"))
    def action_enable(self, ids):
        self._bulk(
            ids,
            lambda s: service.set_schedule_enabled(current_user, s, True),
            _l("%(num)d schedule(s) enabled."),
        )

    @action("disable", _l("Disable"), _l("Disable the selected schedules? They stop at once."))
    def action_disable(self, ids):
        self._bulk(
            ids,
            lambda s: service.set_schedule_enabled(current_user, s, False),
            _l("%(num)d schedule(s) disabled."),
        )

    @action("run_now", _l("Run now"), _l("Send the selected schedules' commands now?"))
    def action_run_now(self, ids):
        self._bulk(
            ids,
            lambda s: service.run_schedule_now(current_user, s),
            _l("%(num)d schedule(s) run now."),
        )

    def _bulk(self, ids, change, done_message) -> None:
        done = 0
        try:
            for schedule in self._selected(ids):
                change(schedule)
                done += 1
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")
            return
        flash(done_message % {"num": done}, "success")


def _on_form_fields(change):
    """Run ``change``; a complaint about ``sun.latitude`` lands on the form's ``sun_latitude``."""
    try:
        return change()
    except InvalidInput as exc:
        fields = {SUN_ERRORS.get(name, name): message for name, message in exc.fields.items()}
        raise InvalidInput(exc.message, fields=fields) from None
