"""``/admin/account/``: every user's own settings (time zone, password)."""

from __future__ import annotations

from flask import flash, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from portal.admin.base import show_domain_error
from portal.extensions import db
from portal.scheduling.timing import _zone_names
from portal.services.errors import DomainError
from portal.services.users import update_own_settings


class AccountForm(FlaskForm):
    timezone = SelectField("Time zone", description="Times in the admin are shown in this zone.")
    current_password = PasswordField(
        "Current password",
        validators=[Optional(), Length(max=1024)],
        render_kw={"autocomplete": "current-password"},
    )
    new_password = PasswordField(
        "New password",
        validators=[Optional(), Length(max=1024)],
        description="Leave empty to keep your password.",
        render_kw={"autocomplete": "new-password"},
    )


class AccountView(BaseView):
    def is_accessible(self) -> bool:
        return current_user.is_authenticated

    def is_visible(self) -> bool:
        return False  # linked from the user name in the navbar, not the menu

    def inaccessible_callback(self, name, **kwargs):
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))

    @expose("/", methods=("GET", "POST"))
    def index(self):
        form = AccountForm()
        form.timezone.choices = [SelectChoice(z, z) for z in sorted(_zone_names())]
        if request.method == "GET":
            form.timezone.data = current_user.timezone
        if form.validate_on_submit():
            try:
                update_own_settings(
                    current_user._get_current_object(),
                    timezone=form.timezone.data,
                    current_password=form.current_password.data,
                    new_password=form.new_password.data,
                )
                db.session.commit()
            except DomainError as exc:
                db.session.rollback()
                show_domain_error(form, exc)
            else:
                flash("Settings saved.", "success")
                return redirect(url_for(".index"))
        return self.render("admin/account.html", form=form)
