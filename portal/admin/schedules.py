"""Admin view of schedules: one form for cron, interval, one-off and sun schedules."""

from __future__ import annotations

import json
import re
from functools import cache
from zoneinfo import available_timezones

from flask import flash, jsonify, request
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.fields import QuerySelectField
from flask_admin.model.typefmt import bool_formatter
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup, escape
from sqlalchemy import select
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    FloatField,
    Form,
    IntegerField,
    SelectField,
    StringField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional
from wtforms.widgets import TextInput

from portal.admin.base import JSONObjectField, SecureModelView, format_instant
from portal.admin.records import (
    changeable_devices,
    device_link,
    drop_repeated_errors,
    pretty_json,
)
from portal.extensions import db
from portal.models import Command, Schedule, ScheduleKind, utcnow
from portal.scheduling import timing
from portal.services import access
from portal.services import schedules as service
from portal.services.errors import DomainError, InvalidInput

FIELDS = (
    "name",
    "device",
    "action",
    "payload",
    "kind",
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
# Each kind's form fields (portal.js shows only the chosen kind's), the service's field that
# holds its timing, and the form field that must then be filled.
KIND_FORM_FIELDS = {
    "cron": ("cron",),
    "interval": ("interval_seconds",),
    "once": ("run_at",),
    "sun": tuple(SUN_FIELDS),
}
KIND_VALUE = {"cron": "cron", "interval": "interval_seconds", "once": "run_at", "sun": "sun"}
KIND_MAIN_FIELD = {
    "cron": "cron",
    "interval": "interval_seconds",
    "once": "run_at",
    "sun": "sun_event",
}
KIND_NAMES = {
    "cron": _l("Cron expression"),
    "interval": _l("Fixed interval"),
    "once": _l("Once"),
    "sun": _l("Sun event"),
}
# Field names the services write into their messages, shown as the form's labels instead.
FIELD_NAME = re.compile(r"\b(start_at|end_at|run_at|interval_seconds|timezone)\b")
LOCAL_HELP = _l("In the schedule's time zone.")
PREVIEW_COUNT = 5
RECENT_COMMANDS = 20


@cache
def zone_names() -> tuple[str, ...]:
    return tuple(sorted(available_timezones() | {"UTC"}))


class ZoneInput(TextInput):
    """A text input with a ``<datalist>`` of the IANA zones: the browser filters it as one
    types, and any text still reaches the server's own check."""

    def __call__(self, field, **kwargs):
        options = "".join(f'<option value="{escape(name)}">' for name in zone_names())
        kwargs.setdefault("list", f"{field.id}-zones")
        kwargs.setdefault("autocomplete", "off")
        kwargs.setdefault("spellcheck", "false")
        return super().__call__(field, **kwargs) + Markup(
            f'<datalist id="{escape(field.id)}-zones">{options}</datalist>'
        )


def zone_field(label, **kwargs) -> StringField:
    """A time-zone field: free text with a searchable list of zones."""
    kwargs.setdefault("description", _l("IANA name, e.g. Europe/Berlin"))
    return StringField(label, widget=ZoneInput(), **kwargs)


def _local(label) -> DateTimeLocalField:
    return DateTimeLocalField(
        label, format="%Y-%m-%dT%H:%M", validators=[Optional()], description=LOCAL_HELP
    )


TIMING_FORM_FIELDS = {
    "kind": SelectField(
        _l("Kind"),
        choices=[SelectChoice(value, label) for value, label in KIND_NAMES.items()],
        coerce=str,
        default="cron",
        description=_l("When the schedule fires; only the fields of this kind are used."),
        # portal.js shows only the chosen kind's fields (the server reads only those).
        render_kw={"data-fields-of": json.dumps(KIND_FORM_FIELDS)},
    ),
    "cron": StringField(
        _l("Cron"),
        validators=[Optional()],
        description=_l("Five fields, e.g. 0 7 * * 1-5 (weekdays at 07:00)."),
    ),
    # No NumberRange: it overflows on a 400-digit number; the service checks the range.
    "interval_seconds": IntegerField(_l("Interval (seconds)"), validators=[Optional()]),
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
    "timezone": zone_field(_l("Time zone"), default="UTC"),
    "start_at": _local(_l("Start at")),
    "end_at": _local(_l("End at")),
}


class PreviewForm(Form):
    """The schedule form's timing fields alone, read from the preview's query string."""


for _name, _field in TIMING_FORM_FIELDS.items():
    setattr(PreviewForm, _name, _field)


def chosen_kind(form) -> str | None:
    """The kind picked in the form; None when none was sent (then every kind field counts,
    and the service asks for exactly one)."""
    if not form.kind.raw_data or form.kind.data not in KIND_VALUE:
        return None
    return form.kind.data


def timing_values(form) -> dict:
    """The service's timing fields from the form: only the chosen kind's, instants in UTC.

    Raises InvalidInput naming the form's field when the chosen kind's field is empty or an
    instant cannot be read in the zone.
    """
    values = {
        "cron": (form.cron.data or "").strip() or None,
        "interval_seconds": form.interval_seconds.data,
        "run_at": form.run_at.data,
        "timezone": form.timezone.data,
        "start_at": form.start_at.data,
        "end_at": form.end_at.data,
    }
    sun = {part: form[name].data for name, part in SUN_FIELDS.items()}
    values["sun"] = sun if sun["event"] else None
    kind = chosen_kind(form)
    if kind is not None:
        for other, name in KIND_VALUE.items():
            if other != kind:
                values[name] = None
        if values[KIND_VALUE[kind]] is None:
            message = _("Needed for this kind of schedule.")
            raise InvalidInput(fields={KIND_MAIN_FIELD[kind]: message})
    for name in ("run_at", "start_at", "end_at"):
        values[name] = service.from_local(values[name], values["timezone"], field=name)
    return values


def in_labels(message: str, form) -> str:
    """A service message about the form, with field names replaced by their labels."""
    if message == service.EXACTLY_ONE:
        names = ("cron", "interval_seconds", "run_at", "sun_event")
        labels = ", ".join(str(form[name].label.text) for name in names)
        return _("Fill exactly one of: %(fields)s.", fields=labels)
    return FIELD_NAME.sub(lambda m: f"“{form[m.group(1)].label.text}”", message)


def form_errors(form, exc: InvalidInput) -> dict[str, str]:
    """The domain error's fields as the form's fields (``sun.latitude`` is ``sun_latitude``)."""
    return {
        SUN_ERRORS.get(name, name): in_labels(message, form)
        for name, message in (exc.fields or {}).items()
    }


def preview_times(form, anchor, now) -> list:
    """The next runs the form's timing would give, by the rules the service saves with."""
    values = timing_values(form)
    try:
        spec = timing.make_spec(anchor=anchor or now, **values)
        timing.check_fires(spec, now)
    except timing.TimingError as exc:
        raise InvalidInput(exc.message, fields=exc.fields) from None
    return timing.next_fire_times(spec, now, PREVIEW_COUNT)


# ---- presentation -------------------------------------------------------------------------


def is_done(schedule: Schedule) -> bool:
    """A one-off that fired or was skipped: it will never run again."""
    return (
        schedule.kind is ScheduleKind.once
        and schedule.next_fire_at is None
        and (schedule.fire_count or schedule.skipped_count) > 0
    )


def _state(view, context, model, name):
    if is_done(model):
        color, label = "success", _("done (fired)") if model.fire_count else _("done (skipped)")
    elif not model.enabled:
        color, label = "secondary", _("disabled")
    elif model.next_fire_at is None:
        color, label = "dark", _("finished")
    else:
        color, label = "primary", _("enabled")
    return Markup('<span class="badge badge-%s" data-testid="schedule-state">%s</span>') % (
        color,
        label,
    )


def _enabled(view, context, model, name):
    if is_done(model):
        return Markup('<span class="badge badge-success">%s</span>') % _("done")
    return bool_formatter(view, model.enabled, name)


def _kind(view, context, model, name):
    return KIND_NAMES[model.kind.value]


def _in_words(view, context, model, name):
    return service.describe(model)


def _upcoming(view, context, model, name):
    """The next five fire times, in the viewer's zone (UTC on hover) and the schedule's."""
    times = service.next_fire_times(model, PREVIEW_COUNT) if model.enabled else []
    if not times:
        return "—"
    rows = "".join(
        f"<tr><td>{format_instant(view, t)}</td>"
        f"<td>{escape(service.to_local(t, model.timezone).strftime('%Y-%m-%d %H:%M'))} "
        f"{escape(model.timezone)}</td></tr>"
        for t in times
    )
    return Markup(f'<table class="table table-sm mb-0" data-testid="upcoming">{rows}</table>')


def schedule_commands(schedule: Schedule) -> list[Command]:
    """The last commands the schedule produced, newest first."""
    return list(
        db.session.execute(
            select(Command)
            .where(Command.schedule_id == schedule.id)
            .order_by(Command.id.desc())
            .limit(RECENT_COMMANDS)
        ).scalars()
    )


def hidden_details(schedule: Schedule) -> set[str]:
    """Detail rows that say nothing for this schedule: other kinds' fields, an open window."""
    kind = schedule.kind.value
    hidden = {name for other, names in KIND_FORM_FIELDS.items() if other != kind for name in names}
    hidden.update(name for name in ("start_at", "end_at") if getattr(schedule, name) is None)
    if is_done(schedule):
        hidden.update(("upcoming", "next_fire_at"))
    return hidden


class ScheduleView(SecureModelView):
    device_column = "device_id"
    details_template = "admin/schedule_details.html"
    create_template = edit_template = "admin/schedule_form.html"
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
        "name",
        "device",
        "action",
        "payload",
        "state",
        "kind",
        "in_words",
        "upcoming",
        "cron",
        "interval_seconds",
        "run_at",
        *SUN_FIELDS,
        "timezone",
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
        "id",
    )
    column_export_list = (
        "id",
        "name",
        "device",
        "action",
        "payload",
        "kind",
        "in_words",
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
    column_formatters = {"enabled": _enabled, "kind": _kind}
    column_formatters_detail = {
        "in_words": _in_words,
        "upcoming": _upcoming,
        "state": _state,
        "kind": _kind,
        "device": lambda v, c, m, n: device_link(m.device),
        "payload": lambda v, c, m, n: pretty_json(m.payload),
    }
    column_formatters_export = {"in_words": lambda v, c, m, n: service.describe(m)}
    column_labels = {
        "id": _l("ID"),
        "name": _l("Name"),
        "device": _l("Device"),
        "action": _l("Action"),
        "payload": _l("Payload"),
        "state": _l("State"),
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
            # No device is chosen for the user: a relay schedule on the wrong board is easy
            # to miss.
            allow_blank=True,
            blank_text=_l("— choose a device —"),
            validators=[DataRequired()],
        ),
        "action": StringField(
            _l("Action"),
            validators=[InputRequired()],
            description=_l("e.g. %(examples)s", examples="relay.on"),
        ),
        "payload": JSONObjectField(_l("Payload (JSON object)"), default=dict),
        **TIMING_FORM_FIELDS,
        "enabled": BooleanField(_l("Enabled"), default=True),
        "misfire_grace_seconds": IntegerField(
            _l("Misfire grace (seconds)"), default=300, validators=[InputRequired()]
        ),
        "command_ttl_seconds": IntegerField(
            _l("Command expires after (seconds)"), default=3600, validators=[InputRequired()]
        ),
    }

    def edit_form(self, obj=None):
        form = super().edit_form(obj)
        if obj is not None and request.method == "GET":
            for name in ("run_at", "start_at", "end_at"):
                value = getattr(obj, name)
                getattr(form, name).data = service.to_local(value, obj.timezone)
        return form

    def validate_form(self, form) -> bool:
        valid = super().validate_form(form)
        drop_repeated_errors(form)
        return valid

    def render(self, template, **kwargs):
        model = kwargs.get("model")
        if template == self.details_template and model is not None:
            kwargs["schedule_commands"] = schedule_commands(model)
            kwargs["hidden_details"] = hidden_details(model)
        return super().render(template, **kwargs)

    def _fields(self, form) -> dict:
        plain = ("name", "device", "action", "payload", "enabled")
        data = {name: form[name].data for name in plain}
        data["misfire_grace_seconds"] = form.misfire_grace_seconds.data
        data["command_ttl_seconds"] = form.command_ttl_seconds.data
        return {**data, **timing_values(form)}

    def service_create(self, form):
        return _on_form_fields(
            form, lambda: service.create_schedule(current_user, **self._fields(form))
        )

    def service_update(self, form, model):
        return _on_form_fields(
            form, lambda: service.update_schedule(current_user, model, **self._fields(form))
        )

    def service_delete(self, model):
        service.delete_schedule(current_user, model)

    @expose("/preview/")
    def preview_view(self):
        """The next runs for the form's timing fields as JSON, or the fields' errors: the
        form's live preview. ``id`` (an existing schedule) anchors an interval as saving would."""
        anchor = None
        if request.args.get("id"):
            anchor = self.get_one(request.args.get("id")).created_at  # out of reach: 404
        form = PreviewForm(request.args)
        if not form.validate():
            errors = {name: " ".join(dict.fromkeys(found)) for name, found in form.errors.items()}
            return jsonify(times=[], errors=errors)
        try:
            times = preview_times(form, anchor, utcnow())
        except InvalidInput as exc:
            return jsonify(times=[], errors=form_errors(form, exc) or {"kind": exc.message})
        zone = (form.timezone.data or "UTC").strip()
        return jsonify(
            times=[
                {
                    "utc": t.isoformat(),
                    "utc_text": f"{t:%Y-%m-%d %H:%M} UTC",
                    "local_text": f"{service.to_local(t, zone):%Y-%m-%d %H:%M} {zone}",
                }
                for t in times
            ],
            errors={},
        )

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


def _on_form_fields(form, change):
    """Run ``change``; a complaint about ``sun.latitude`` lands on the form's ``sun_latitude``,
    and field names in the messages read as the form's labels."""
    try:
        return change()
    except InvalidInput as exc:
        raise InvalidInput(exc.message, fields=form_errors(form, exc)) from None
