"""Admin-only views: users, personal tokens and the audit log."""

from __future__ import annotations

from flask import current_app, flash, request
from flask_admin.actions import action
from flask_admin.contrib.sqla.fields import QuerySelectField
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup, escape
from sqlalchemy import select
from wtforms import BooleanField, IntegerField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from portal.admin.base import SecureModelView, form_data, show_token_once
from portal.admin.keyset import KeysetListMixin
from portal.extensions import db
from portal.i18n import language_choices
from portal.models import Role, User
from portal.services.tokens import (
    MAX_EXPIRES_DAYS,
    create_personal_token,
    revoke_personal_token,
)
from portal.services.users import create_user, delete_user, update_user


class UserView(SecureModelView):
    admin_only = True
    writable_by = (Role.admin,)
    column_list = (
        "username",
        "role",
        "active",
        "timezone",
        "locale",
        "last_login_at",
        "created_at",
    )
    column_details_list = column_list
    column_export_list = column_list
    column_searchable_list = ("username",)
    column_filters = ("role", "active")
    column_default_sort = ("username", False)
    column_labels = {
        "username": _l("Username"),
        "role": _l("Role"),
        "active": _l("Active"),
        "timezone": _l("Time zone"),
        "locale": _l("Language"),
        "last_login_at": _l("Last login"),
        "created_at": _l("Created"),
    }
    column_formatters = {"locale": lambda v, c, m, n: language_name(m.locale)}
    column_formatters_export = {"locale": lambda v, c, m, n: m.locale or ""}
    form_columns = ("username", "role", "active", "timezone", "locale", "password")
    form_extra_fields = {
        "username": StringField(_l("Username"), validators=[InputRequired(), Length(max=64)]),
        "role": SelectField(
            _l("Role"),
            choices=[SelectChoice(r.value, r.value) for r in Role],
            default=Role.viewer.value,
        ),
        "active": BooleanField(_l("Active"), default=True),
        "timezone": StringField(
            _l("Time zone"), default="UTC", description=_l("IANA name, e.g. Europe/Berlin")
        ),
        "locale": SelectField(_l("Language"), default="", validate_choice=False),
        "password": PasswordField(
            _l("Password"),
            validators=[Optional(), Length(max=1024)],
            description=_l(
                "At least 8 characters. Leave empty when editing to keep the current password."
            ),
        ),
    }

    def create_form(self, obj=None):
        return with_language_choices(super().create_form(obj))

    def edit_form(self, obj=None):
        form = with_language_choices(super().edit_form(obj))
        if obj is not None and request.method == "GET":
            form.role.data = obj.role.value
            form.locale.data = obj.locale or ""
        return form

    def service_create(self, form):
        data = form_data(form, "username", "role", "active", "timezone", "locale", "password")
        user = create_user(
            current_user,
            data["username"],
            data["password"] or "",
            data["role"],
            active=data["active"],
        )
        settings = {}
        if data["timezone"] and data["timezone"] != "UTC":
            settings["timezone"] = data["timezone"]
        if data["locale"]:
            settings["locale"] = data["locale"]
        if settings:
            update_user(current_user, user, languages=languages(), **settings)
        return user

    def service_update(self, form, model):
        data = form_data(form, "username", "role", "active", "timezone", "locale", "password")
        password = data.pop("password") or None
        return update_user(current_user, model, password=password, languages=languages(), **data)

    def service_delete(self, model):
        delete_user(current_user, model)


def languages() -> list[str]:
    return current_app.config["LANGUAGES"]


def language_name(code: str | None) -> str:
    """A user's language as the user list shows it: its name, or "Follow the browser"."""
    return dict(language_choices()).get(code or "", code or "")


def with_language_choices(form):
    form.locale.choices = [SelectChoice(code, name) for code, name in language_choices()]
    return form


class TokenView(SecureModelView):
    admin_only = True
    writable_by = (Role.admin,)
    supports_edit = supports_delete = False
    column_list = (
        "user",
        "label",
        "token_prefix",
        "scope",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    )
    column_details_list = column_list
    column_export_list = column_list
    column_labels = {
        "user": _l("User"),
        "label": _l("Label"),
        "token_prefix": _l("Starts with"),
        "scope": _l("Scope"),
        "expires_at": _l("Expires"),
        "created_at": _l("Created"),
        "last_used_at": _l("Last used"),
        "revoked_at": _l("Revoked"),
    }
    column_filter_labels = {"user.username": _l("User")}
    column_searchable_list = ("label",)
    column_filters = ("user.username", "revoked_at")
    column_default_sort = ("created_at", True)
    form_columns = ("user", "label", "expires_days", "scope")
    form_extra_fields = {
        "user": QuerySelectField(
            _l("User"),
            query_factory=lambda: (
                db.session.execute(select(User).order_by(User.username)).scalars().all()
            ),
            validators=[InputRequired()],
            allow_blank=False,
        ),
        "label": StringField(
            _l("Label"),
            validators=[Length(max=100)],
            description=_l("What the token is for, e.g. backup-script"),
        ),
        "expires_days": IntegerField(
            _l("Expires after (days)"),
            validators=[Optional(), NumberRange(min=1, max=MAX_EXPIRES_DAYS)],
            description=_l("Empty: the token never expires."),
        ),
        "scope": SelectField(
            _l("Scope"),
            choices=[
                SelectChoice("full", _l("Full: read and change")),
                SelectChoice("read", _l("Read only (GET)")),
            ],
            default="full",
        ),
    }

    def service_create(self, form):
        token, clear = create_personal_token(
            current_user,
            form.user.data,
            form.label.data,
            expires_days=form.expires_days.data,
            scope=form.scope.data,
        )
        label = form.label.data or _("no label")
        self._new_token = (f"{form.user.data.username} ({label})", clear)
        return token

    def after_model_change(self, form, model, is_created):
        if is_created and getattr(self, "_new_token", None):
            show_token_once(*self._new_token)
            self._new_token = None

    @action(
        "revoke",
        _l("Revoke"),
        _l("Revoke the selected tokens? Scripts using them get 401 at once."),
    )
    def action_revoke(self, ids):
        tokens = self.selected(ids)
        for token in tokens:
            revoke_personal_token(current_user, token)
        db.session.commit()
        flash(_("%(num)d token(s) revoked.", num=len(tokens)), "success")


def _changes(view, context, model, name):
    if not model.changes:
        return ""
    rows = "".join(
        f"<tr><th>{escape(field)}</th>"
        f"<td>{escape(_short(values[0] if isinstance(values, list) else ''))}</td>"
        f"<td>→ {escape(_short(values[1] if isinstance(values, list) else values))}</td></tr>"
        for field, values in model.changes.items()
    )
    return Markup(f'<table class="table table-sm mb-0 small">{rows}</table>')


def _short(value) -> str:
    text = "∅" if value is None else str(value)
    return text if len(text) <= 80 else text[:77] + "…"


class AuditView(KeysetListMixin, SecureModelView):
    admin_only = True
    supports_create = supports_edit = supports_delete = False
    # It grows with every change: paged by key, counted up to a cap (portal/admin/keyset.py).
    simple_list_pager = True
    count_cap = 10_000
    column_list = (
        "created_at",
        "actor_name",
        "action",
        "object_type",
        "object_id",
        "object_repr",
        "changes",
        "via",
        "remote_addr",
    )
    column_details_list = column_list
    column_export_list = column_list
    column_labels = {
        "created_at": _l("When"),
        "actor_name": _l("Who"),
        "action": _l("Action"),
        "object_type": _l("Object"),
        "object_id": _l("ID"),
        "object_repr": _l("Name"),
        "changes": _l("Changes"),
        "via": _l("Via"),
        "remote_addr": _l("From"),
    }
    column_searchable_list = ("actor_name", "object_repr")
    column_filters = ("action", "object_type", "object_id", "actor_name", "via", "created_at")
    # Only orders an index serves, so every page is a range read (portal/admin/keyset.py).
    column_sortable_list = ("created_at",)
    column_default_sort = ("id", True)
    column_formatters = {"changes": _changes}
    column_formatters_export = {"changes": lambda v, c, m, n: m.changes}
