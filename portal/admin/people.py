"""Admin-only views: users, personal tokens and the audit log."""

from __future__ import annotations

from flask import flash, request
from flask_admin.actions import action
from flask_admin.contrib.sqla.fields import QuerySelectField
from flask_login import current_user
from markupsafe import Markup, escape
from sqlalchemy import select
from wtforms import BooleanField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional

from portal.admin.base import SecureModelView, form_data, show_token_once
from portal.extensions import db
from portal.models import Role, User
from portal.services.tokens import create_personal_token, revoke_personal_token
from portal.services.users import create_user, delete_user, update_user


class UserView(SecureModelView):
    admin_only = True
    writable_by = (Role.admin,)
    column_list = ("username", "role", "active", "timezone", "last_login_at", "created_at")
    column_details_list = column_list
    column_export_list = column_list
    column_searchable_list = ("username",)
    column_filters = ("role", "active")
    column_default_sort = ("username", False)
    column_labels = {"last_login_at": "Last login", "created_at": "Created"}
    form_columns = ("username", "role", "active", "timezone", "password")
    form_extra_fields = {
        "username": StringField("Username", validators=[InputRequired(), Length(max=64)]),
        "role": SelectField(
            "Role",
            choices=[SelectChoice(r.value, r.value) for r in Role],
            default=Role.viewer.value,
        ),
        "active": BooleanField("Active", default=True),
        "timezone": StringField(
            "Time zone", default="UTC", description="IANA name, e.g. Europe/Berlin"
        ),
        "password": PasswordField(
            "Password",
            validators=[Optional(), Length(max=1024)],
            description="At least 8 characters. Leave empty when "
            "editing to keep the current password.",
        ),
    }

    def edit_form(self, obj=None):
        form = super().edit_form(obj)
        if obj is not None and request.method == "GET":
            form.role.data = obj.role.value
        return form

    def service_create(self, form):
        data = form_data(form, "username", "role", "active", "timezone", "password")
        user = create_user(
            current_user,
            data["username"],
            data["password"] or "",
            data["role"],
            active=data["active"],
        )
        if data["timezone"] and data["timezone"] != "UTC":
            update_user(current_user, user, timezone=data["timezone"])
        return user

    def service_update(self, form, model):
        data = form_data(form, "username", "role", "active", "timezone", "password")
        password = data.pop("password") or None
        return update_user(current_user, model, password=password, **data)

    def service_delete(self, model):
        delete_user(current_user, model)


class TokenView(SecureModelView):
    admin_only = True
    writable_by = (Role.admin,)
    supports_edit = supports_delete = False
    column_list = ("user", "label", "token_prefix", "created_at", "last_used_at", "revoked_at")
    column_details_list = column_list
    column_export_list = column_list
    column_labels = {
        "token_prefix": "Starts with",
        "created_at": "Created",
        "last_used_at": "Last used",
        "revoked_at": "Revoked",
    }
    column_searchable_list = ("label",)
    column_filters = ("user.username", "revoked_at")
    column_default_sort = ("created_at", True)
    form_columns = ("user", "label")
    form_extra_fields = {
        "user": QuerySelectField(
            "User",
            query_factory=lambda: (
                db.session.execute(select(User).order_by(User.username)).scalars().all()
            ),
            validators=[InputRequired()],
            allow_blank=False,
        ),
        "label": StringField(
            "Label",
            validators=[Length(max=100)],
            description="What the token is for, e.g. backup-script",
        ),
    }

    def service_create(self, form):
        token, clear = create_personal_token(current_user, form.user.data, form.label.data)
        self._new_token = (f"{form.user.data.username} ({form.label.data or 'no label'})", clear)
        return token

    def after_model_change(self, form, model, is_created):
        if is_created and getattr(self, "_new_token", None):
            show_token_once(*self._new_token)
            self._new_token = None

    @action("revoke", "Revoke", "Revoke the selected tokens? Scripts using them get 401 at once.")
    def action_revoke(self, ids):
        tokens = self.selected(ids)
        for token in tokens:
            revoke_personal_token(current_user, token)
        db.session.commit()
        flash(f"{len(tokens)} token(s) revoked.", "success")


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


class AuditView(SecureModelView):
    admin_only = True
    supports_create = supports_edit = supports_delete = False
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
        "created_at": "When",
        "actor_name": "Who",
        "object_type": "Object",
        "object_id": "Id",
        "object_repr": "Name",
        "remote_addr": "From",
    }
    column_searchable_list = ("actor_name", "object_repr")
    column_filters = ("action", "object_type", "object_id", "actor_name", "via", "created_at")
    column_default_sort = ("id", True)
    column_formatters = {"changes": _changes}
    column_formatters_export = {"changes": lambda v, c, m, n: m.changes}
