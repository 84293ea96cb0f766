"""The secured model view every admin view inherits: login, roles, row scope, services."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import abort, flash, request
from flask_admin.babel import gettext as admin_gettext
from flask_admin.contrib.sqla import ModelView
from flask_admin.contrib.sqla import filters as sqla_filters
from flask_admin.form import BaseForm
from flask_admin.model import filters, typefmt
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from jinja2 import pass_context
from markupsafe import Markup, escape
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms import SelectField, TextAreaField, ValidationError
from wtforms.fields.choices import SelectChoice

from portal.admin.arguments import (
    holds_nul,
    list_page,
    row_key,
    row_keys,
    search_words,
    storable_json,
    with_refusing_filters,
)
from portal.admin.deleting import SafeDeleteMixin
from portal.admin.live import login_redirect
from portal.config import SOURCE_LANGUAGE
from portal.extensions import db
from portal.models import AuditEvent, Role, User
from portal.services import access
from portal.services.errors import DomainError, NotFound

# Flask-Admin's named filter URL arguments ("flt0_device_id_equals"): the label and the
# operation, lowercased, other characters dropped, spaces as underscores.
FILTER_ARG_DROP = re.compile("[^a-z0-9 ]")
FILTER_ARG_SPACES = re.compile(" +")

WRITE_VIEWS = {
    "create_view": "create",
    "edit_view": "edit",
    "delete_view": "delete",
    "ajax_update": "edit",
}


class CSRFForm(BaseForm):
    """Flask-Admin's form base with Flask-WTF's CSRF, the same token the rest of the app uses."""

    Meta = FlaskForm.Meta

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        for field in self:
            if any(holds_nul(value) for value in field.raw_data or ()):
                # No database column keeps it (PostgreSQL refuses NUL in text).
                field.errors = [*field.errors, _("NUL characters are not allowed.")]
                valid = False
        return valid


class JSONObjectField(TextAreaField):
    """A textarea holding a JSON object (``{}`` when left empty)."""

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return json.dumps(self.data or {}, indent=2) if self.data is not None else "{}"

    def process_formdata(self, valuelist: list[str]) -> None:
        if not valuelist:
            return
        text = valuelist[0].strip()
        if not text:
            self.data = {}
            return
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            self.data = None
            raise ValueError(
                _("Not valid JSON: %(error)s (line %(line)s).", error=exc.msg, line=exc.lineno)
            ) from None
        except (ValueError, RecursionError):  # a number of over 4,300 digits, or deep nesting
            self.data = None
            raise ValueError(_("This JSON is too large to read.")) from None
        if not isinstance(value, dict):
            self.data = None
            raise ValueError(_('A JSON object is expected, e.g. {"seconds": 30}.'))
        if not storable_json(value):
            self.data = None
            raise ValueError(_("NUL characters, NaN and Infinity cannot be stored in JSON."))
        self.data = value

    def pre_validate(self, form) -> None:
        if self.process_errors:
            raise ValidationError(self.process_errors[0])


def show_token_once(name: str, token: str) -> None:
    text = escape(_("New token for %(name)s — copy it now, it is shown only once:"))
    flash(
        text % {"name": Markup("<strong>%s</strong>") % name}
        + Markup("<br><code class='token-once' data-testid='new-token'>%s</code>") % token,
        "warning",
    )


# The viewer's zone while a page renders: a list page formats a few hundred instants, and
# reading ``current_user`` for each of them was a visible part of its time.
_render_zone: ContextVar[tzinfo | None] = ContextVar("render_zone", default=None)


def viewer_zone() -> tzinfo:
    """The viewer's time zone: a user setting, UTC by default or when the setting is unknown."""
    zone = _render_zone.get()
    if zone is not None:
        return zone
    try:
        return ZoneInfo(getattr(current_user, "timezone", None) or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def localtime(value: datetime) -> datetime:
    """``value`` in the viewer's time zone (a user setting, default UTC)."""
    return value.astimezone(viewer_zone())


def format_instant(view, value: datetime, name: str = "") -> Markup:
    """An instant in the viewer's time zone, with UTC on hover."""
    local = value.astimezone(viewer_zone())
    utc = value.astimezone(UTC).isoformat()  # isoformat: a third of strftime's cost
    return Markup(
        f'<time datetime="{utc}" title="{utc[:10]} {utc[11:19]} UTC">'
        f"{local.isoformat(' ', 'minutes')[:16]} {escape(local.tzname() or '')}</time>"
    )


@with_refusing_filters
class FilterConverter(sqla_filters.FilterConverter):
    """Flask-Admin's filters, knowing that UTCDateTime columns hold instants; each refuses a
    value the database cannot compare (Flask-Admin then flashes it and leaves it out)."""

    @filters.convert("UTCDateTime")
    def conv_utc_datetime(self, column, name, **kwargs):
        return self.conv_datetime(column, name, **kwargs)


class OwnerFormMixin:
    """An "Owner" select on the create and edit forms of an owned object (a device, a channel):
    admins choose among admins and operators; for anyone else the field is left out (the
    service makes them the owner)."""

    def get_create_form(self):
        form = super().get_create_form()
        form.owner = SelectField(_l("Owner"), coerce=str)
        return form

    def get_edit_form(self):
        form = super().get_edit_form()
        form.owner = SelectField(_l("Owner"), coerce=str)
        return form

    def _prepare_owner(self, form, default: str | None):
        if current_user.role is not Role.admin:
            del form.owner
            return form
        users = db.session.execute(
            select(User)
            .where(User.role.in_([Role.admin, Role.operator]), User.active)
            .order_by(User.username)
        ).scalars()
        form.owner.choices = [
            SelectChoice(str(u.id), f"{u.username} ({u.role.value})") for u in users
        ]
        if request.method == "GET" and default:
            form.owner.data = default
        return form

    def _owner(self, form) -> User | None:
        field = getattr(form, "owner", None)
        if field is None or not field.data or not str(field.data).isdigit():
            return None
        return db.session.get(User, int(field.data))


class SecureModelView(SafeDeleteMixin, ModelView):
    """Login required; writes by role; rows limited to the user's reach; changes via services.

    Subclasses set ``device_column`` (the name of the column that ties a row to a device),
    ``admin_only`` for views only admins may open, and ``writable_by`` for who may write.
    """

    form_base_class = CSRFForm
    column_type_formatters = {**typefmt.BASE_FORMATTERS, datetime: format_instant}
    column_type_formatters_detail = {**typefmt.DETAIL_FORMATTERS, datetime: format_instant}
    column_type_formatters_export = {
        **typefmt.EXPORT_FORMATTERS,
        datetime: lambda view, value, name="": value.isoformat(),
    }
    filter_converter = FilterConverter()
    fast_mass_delete = False  # deletions go through delete_model, so each is audited
    named_filter_urls = True
    admin_only = False
    writable_by: tuple[Role, ...] = (Role.admin, Role.operator)
    device_column: str | None = None  # name of the model's column that holds the device id
    page_size = 50
    can_view_details = True
    count_cap: int | None = None  # big tables set it, and simple_list_pager = True
    list_template = "admin/model/portal_list.html"
    details_template = "admin/model_details.html"
    can_export = True
    export_types = ["csv"]
    # Role-dependent permissions; the view's own can_* attributes say what the view supports.
    supports_create = True
    supports_edit = True
    supports_delete = True

    # ---- access ---------------------------------------------------------------------------
    def is_accessible(self) -> bool:
        if not current_user.is_authenticated:
            return False
        return not self.admin_only or current_user.role is Role.admin

    def is_visible(self) -> bool:
        return current_user.is_authenticated and self.is_accessible()

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return login_redirect()
        abort(404)  # out of reach answers 404, not 403

    def _writer(self) -> bool:
        return current_user.is_authenticated and current_user.role in self.writable_by

    @property
    def can_create(self) -> bool:
        return self.supports_create and self._writer()

    @property
    def can_edit(self) -> bool:
        return self.supports_edit and self._writer()

    @property
    def can_delete(self) -> bool:
        return self.supports_delete and self._writer()

    def _handle_view(self, name, **kwargs):
        denied = super()._handle_view(name, **kwargs)
        if denied is not None:
            return denied
        if name in WRITE_VIEWS and not getattr(self, "can_" + WRITE_VIEWS[name]):
            # A reader may see the object but not change it: 403, as in the API.
            abort(403)
        if name == "action_view" and request.method == "POST":
            action = request.form.get("action", "")
            if not self.is_action_allowed(action):
                abort(403)
        return None

    def selected(self, ids) -> list:
        """The selected rows that are within the user's reach (others, and junk ids, are
        silently left)."""
        return self.get_query().filter(self.model.id.in_(row_keys(ids, self.model.id))).all()

    def is_action_allowed(self, name: str) -> bool:
        if not self._writer():
            return False
        return super().is_action_allowed(name)

    # ---- filters: labels in the user's language, URL arguments from the English labels, so a
    # bookmarked or linked filter (the dashboard links to one) works in every language -------
    column_filter_labels: dict[str, Any] = {}  # labels of filters on a relation ("device.name")

    def scaffold_filters(self, name):
        found = super().scaffold_filters(name)
        label = self.column_filter_labels.get(name) if isinstance(name, str) else None
        if label is not None:
            for flt in found or ():
                # Flask-Admin names it "device / Devices / Name"; links already use that name.
                flt.url_name = flt.name
                flt.name = label
        return found

    def get_filter_arg(self, index, flt) -> str:
        if not self.named_filter_urls:
            return super().get_filter_arg(index, flt)
        with force_locale(SOURCE_LANGUAGE):
            words = f"{getattr(flt, 'url_name', flt.name)} {flt.operation()}".lower()
        return FILTER_ARG_SPACES.sub("_", FILTER_ARG_DROP.sub("", words))

    # ---- big tables: a filtered page's keys first, never count more than ``count_cap`` rows --
    # A filtered page reads its ids from an index alone, then those rows by id. Read whole,
    # with the device filter PostgreSQL walked the primary key backwards past every newer
    # reading of other devices (page 1 of a device that went quiet: 44 ms for 230,000 newer
    # readings; the ids alone come from the (device_id, id) index in 0.3 ms). An unfiltered
    # page stays one query: its newest rows are the ones VACUUM has not reached yet, and an
    # index-only scan that must visit them anyway was slower (page 5,000: 55 -> 80 ms).
    IDS_FIRST_MAX = 500

    def get_list(self, page, sort_column, sort_desc, search, filters, execute=True, page_size=None):
        size = self.page_size if page_size is None else page_size
        page = list_page(page, size)
        search = self.searchable(search)
        count, data = super().get_list(
            page, sort_column, sort_desc, search, filters, execute=False, page_size=page_size
        )
        if not execute:
            return count, data
        data = self.page_rows(data, page, size, sort_column, sort_desc, bool(filters or search))
        if self.count_cap:
            count = self.capped_count(search, filters, self.count_cap)
        return count, data

    def page_rows(self, query, page, size, sort_column, sort_desc, filtered) -> list:
        """The rows of a list page. ``query`` holds them, sorted, with Flask-Admin's OFFSET and
        LIMIT (KeysetListMixin reads a page by its key instead)."""
        return self.rows_by_ids(query, size) if self.count_cap and filtered else query.all()

    def capped_count(self, search, filters, cap: int) -> int:
        """The rows that match, counted up to ``cap`` + 1: the count stops there instead of
        scanning a million-row table on every page view. Only the primary key (kept in the
        list's order, so the database walks the index the page itself uses): it counts from an
        index instead of reading each row."""
        _, capped = super().get_list(
            None, None, False, search, filters, execute=False, page_size=cap + 1
        )
        return capped.with_entities(self.model.id).count()

    def searchable(self, search: str | None) -> str | None:
        """The search as the query may use it; one the database cannot run is flashed and left
        out, as Flask-Admin does with a bad filter value."""
        try:
            return search_words(search)
        except ValueError:
            flash(_("Search ignored: it is too long or cannot be searched for."), "error")
            return None

    def rows_by_ids(self, page_query, limit: int) -> list:
        """The rows of ``page_query`` (at most ``limit``), in its order: by ids first for a
        page, whole for a longer one (whose id list could be too long for one statement)."""
        if not limit or limit > self.IDS_FIRST_MAX:
            return page_query.all()
        ids = [key for (key,) in page_query.with_entities(self.model.id)]
        if not ids:
            return []
        by_id = {row.id: row for row in self.get_query().filter(self.model.id.in_(ids))}
        return [by_id[key] for key in ids if key in by_id]

    # ---- row scope ------------------------------------------------------------------------
    def scope(self, query):
        if self.device_column is None or access.sees_all(current_user):
            return query
        column = getattr(self.model, self.device_column)
        return query.filter(column.in_(access.visible_device_ids(current_user)))

    def get_query(self):
        query = self.scope(super().get_query())
        if request.endpoint == f"{self.endpoint}.export":
            query = query.options(*self.export_loads())
        return query

    def export_loads(self) -> list:
        """Load the exported relationships with the rows. An export streams its CSV after the
        view returns, when the request's session is closed (under gunicorn, not in tests that
        hold their own app context): a lazy load there fails and the CSV stops at its header."""
        relationships = self.model.__mapper__.relationships
        joined = {str(attribute) for attribute in self._auto_joins}  # loaded by a join already
        attributes = [
            getattr(self.model, name) for name, _ in self._export_columns if name in relationships
        ]
        return [selectinload(attribute) for attribute in attributes if str(attribute) not in joined]

    def get_count_query(self):
        return self.scope(super().get_count_query())

    def get_one(self, id):
        key = row_key(id, self.model.id)
        if key is None:
            abort(404)
        obj = self.scope(super().get_query()).filter(self.model.id == key).one_or_none()
        if obj is None:
            abort(404)
        return obj

    # ---- list pages: the rows in one call ---------------------------------------------------
    @pass_context
    def list_rows(self, context, rows) -> Markup:
        """The ``<tr>`` of each row, as Flask-Admin's list template writes them.

        The template renders three nested scoped blocks per row (each copies the whole template
        context) and calls three functions per cell: about half of a commands page's time, more
        than the values themselves. portal_list.html keeps Flask-Admin's rows for views with
        editable columns. Row actions still render through their macros (row_actions.html).
        """
        checkbox = context.resolve("actions") and escape(admin_gettext("Select record"))
        row_actions = context.resolve("list_row_actions") if self.column_display_actions else None
        columns = [(name, f'<td class="col-{escape(name)}">') for name, _ in self._list_columns]
        html = []
        for row in rows:
            pk = self.get_pk_value(row)
            html.append("<tr>")
            if checkbox:
                html.append(
                    '<td><input type="checkbox" name="rowid" class="action-checkbox" '
                    f'value="{escape(pk)}" title="{checkbox}" /></td>'
                )
            if row_actions is not None:
                html.append('<td class="list-buttons-column">')
                html.extend(action.render(context, pk, row) for action in row_actions)
                html.append("</td>")
            for name, cell in columns:
                html.append(f"{cell}{escape(self.get_list_value(context, row, name))}</td>")
            html.append("</tr>\n")
        return Markup("".join(html))

    # ---- rendering: details show the object's history (as Django's admin does); lists get
    # row_url; every instant on the page is shown in the viewer's zone, looked up once -------
    def render(self, template, **kwargs):
        model = kwargs.get("model")
        if template == self.details_template and model is not None and "history" not in kwargs:
            kwargs["history"] = object_history(model)
        if "return_url" in kwargs and "row_url" not in kwargs:
            kwargs["row_url"] = row_url_builder(self.get_url, kwargs["return_url"])
        zone = _render_zone.set(viewer_zone())
        try:
            return super().render(template, **kwargs)
        finally:
            _render_zone.reset(zone)

    # ---- changes go through the services --------------------------------------------------
    def service_create(self, form) -> Any:
        raise NotImplementedError

    def service_update(self, form, model) -> Any:
        raise NotImplementedError

    def service_delete(self, model) -> None:
        raise NotImplementedError

    def create_model(self, form):
        return self._run_service(form, lambda: self.service_create(form), True)

    def update_model(self, form, model):
        return bool(
            self._run_service(form, lambda: self.service_update(form, model) or model, False)
        )

    def delete_model(self, model):
        try:
            self.service_delete(model)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")
            return False
        return True

    def _run_service(self, form, call, is_created: bool):
        try:
            model = call()
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            show_domain_error(form, exc)
            return False
        self.after_model_change(form, model, is_created)
        return model

    def handle_view_exception(self, exc: Exception) -> bool:
        if isinstance(exc, DomainError):
            db.session.rollback()
            flash(exc.message, "error")
            return True
        return super().handle_view_exception(exc)


def show_domain_error(form, exc: DomainError) -> None:
    """Put a domain error on the form: each named field gets its message."""
    unplaced = []
    for name, message in (exc.fields or {}).items():
        field = getattr(form, name, None) or getattr(form, name.removesuffix("_id"), None)
        if field is not None and hasattr(field, "errors"):
            if not isinstance(field.errors, list):
                field.errors = list(field.errors)
            field.errors.append(message)
        else:
            unplaced.append(f"{name}: {message}")
    if isinstance(exc, NotFound) or not exc.fields:
        unplaced.append(exc.message)
    if unplaced:
        flash(" ".join(unplaced), "error")


def object_history(model, limit: int = 50) -> list:
    """The audit events about ``model``, newest first."""
    return (
        db.session.execute(
            select(AuditEvent)
            .where(
                AuditEvent.object_type == model.__tablename__.rstrip("s"),
                AuditEvent.object_id == str(model.id),
            )
            .order_by(AuditEvent.id.desc())
            .limit(limit)
        )
        .scalars()
        .all()
    )


ROW_ID_MARK = "__row_id__"
QUERY_SAFE = "!$'()*,/:;?@"  # what werkzeug leaves unquoted in a query value


def row_url_builder(get_url: Callable[..., str], return_url: str) -> Callable[[str, Any], str]:
    """``row_url(endpoint, row_id)``, equal to ``get_url(endpoint, id=row_id, url=return_url)``.

    A list page links every row to its details (and edit) page, and url_for re-encodes the long
    return URL each time (1.3 ms for 50 rows; 0.1 ms here). Here url_for runs once per endpoint,
    with a marker where the id goes; a return URL that itself holds the marker falls back to
    url_for.
    """
    parts: dict[str, tuple[str, ...]] = {}

    def row_url(endpoint: str, row_id: Any) -> str:
        if endpoint not in parts:
            parts[endpoint] = tuple(
                get_url(endpoint, id=ROW_ID_MARK, url=return_url).split(ROW_ID_MARK)
            )
        around = parts[endpoint]
        if len(around) != 2:
            return get_url(endpoint, id=row_id, url=return_url)
        return quote_plus(str(row_id), safe=QUERY_SAFE).join(around)

    return row_url


def form_data(form, *names: str) -> dict[str, Any]:
    return {name: getattr(form, name).data for name in names if hasattr(form, name)}
