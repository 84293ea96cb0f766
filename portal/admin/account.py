"""``/admin/account/``: every user's own settings (time zone, language, password, second
factor, sessions) and their own personal API tokens."""

from __future__ import annotations

from datetime import timedelta

from flask import abort, current_app, flash, make_response, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import refresh
from flask_login import current_user, logout_user
from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import IntegerField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from portal import sessions as login_session
from portal.admin.base import format_instant, show_domain_error
from portal.auth.second_factor import must_enrol
from portal.extensions import db
from portal.i18n import language_choices
from portal.models import TokenScope, utcnow
from portal.scheduling.timing import _zone_names
from portal.services.errors import DomainError, NotFound
from portal.services.second_factor import (
    ISSUER,
    begin_enrolment,
    check_second_factor,
    confirm_enrolment,
    provisioning_uri,
    qr_svg,
    remaining_recovery_codes,
    remove_second_factor,
)
from portal.services.sessions import end_user_sessions, live_sessions
from portal.services.tokens import (
    MAX_EXPIRES_DAYS,
    create_personal_token,
    get_personal_token,
    own_personal_tokens,
    revoke_personal_token,
    token_scopes_for,
)
from portal.services.users import update_own_settings


class AccountForm(FlaskForm):
    timezone = SelectField(
        _l("Time zone"), description=_l("Times in the admin are shown in this zone.")
    )
    # The service checks the choice (one rule for every caller), not WTForms.
    locale = SelectField(
        _l("Language"),
        description=_l("The language of these pages. Follow the browser to use its language."),
        validate_choice=False,
    )
    current_password = PasswordField(
        _l("Current password"),
        validators=[Optional(), Length(max=1024)],
        render_kw={"autocomplete": "current-password"},
    )
    new_password = PasswordField(
        _l("New password"),
        validators=[Optional(), Length(max=1024)],
        description=_l("Leave empty to keep your password."),
        render_kw={"autocomplete": "new-password"},
    )


class CodeForm(FlaskForm):
    code = StringField(
        _l("Code"),
        validators=[InputRequired(), Length(max=32)],
        description=_l("The 6 digits your authenticator app shows now."),
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"},
    )


SCOPE_LABELS = {
    TokenScope.full: _l("Full: read and change"),
    TokenScope.read: _l("Read only (GET)"),
}


class TokenForm(FlaskForm):
    label = StringField(
        _l("Label"),
        validators=[Length(max=100)],
        description=_l("What the token is for, e.g. backup-script"),
    )
    expires_days = IntegerField(
        _l("Expires after (days)"),
        validators=[Optional(), NumberRange(min=1, max=MAX_EXPIRES_DAYS)],
        description=_l("Empty: the token never expires."),
        render_kw={"min": 1, "max": MAX_EXPIRES_DAYS},
    )
    # The service decides which scopes the user may have (one rule for every caller).
    scope = SelectField(_l("Scope"), validate_choice=False)


def token_form(user, formdata=None) -> TokenForm:
    form = TokenForm(formdata=formdata)
    form.scope.choices = [
        SelectChoice(scope.value, SCOPE_LABELS[scope]) for scope in token_scopes_for(user)
    ]
    return form


class AccountView(BaseView):
    def is_accessible(self) -> bool:
        return current_user.is_authenticated

    def is_visible(self) -> bool:
        return False  # linked from the user name in the navbar, not the menu

    def inaccessible_callback(self, name, **kwargs):
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))

    @expose("/", methods=("GET", "POST"))
    def index(self):
        form = self._account_form(fill=request.method == "GET")
        if form.validate_on_submit():
            try:
                update_own_settings(
                    current_user._get_current_object(),
                    timezone=form.timezone.data,
                    locale=form.locale.data,
                    languages=current_app.config["LANGUAGES"],
                    current_password=form.current_password.data,
                    new_password=form.new_password.data,
                    session_key=login_session.current_key(),
                )
                db.session.commit()
            except DomainError as exc:
                db.session.rollback()
                show_domain_error(form, exc)
            else:
                refresh()  # "Settings saved." in the language just chosen
                flash(_("Settings saved."), "success")
                return redirect(url_for(".index"))
        return self._render_account(form)

    def _render_account(self, form: AccountForm, tokens_form: TokenForm | None = None, **extra):
        user = current_user._get_current_object()
        config = current_app.config
        return self.render(
            "admin/account.html",
            form=form,
            token_form=tokens_form or token_form(user, formdata=None),
            tokens=own_personal_tokens(user),
            revoke_form=FlaskForm(),
            scope_labels=SCOPE_LABELS,
            now=utcnow(),
            code_form=CodeForm(),
            everywhere_form=FlaskForm(),
            has_second_factor=user.has_second_factor,
            recovery_left=remaining_recovery_codes(user) if user.has_second_factor else 0,
            sessions=live_sessions(
                user,
                idle=timedelta(minutes=config["SESSION_IDLE_MINUTES"]),
                max_age=timedelta(hours=config["SESSION_MAX_HOURS"]),
            ),
            this_session=login_session.current_key_hash(),
            local_time=lambda value: format_instant(self, value),
            **extra,
        )

    @expose("/second-factor/", methods=("GET", "POST"))
    def second_factor(self):
        """Enrol: a QR code and the secret as text, confirmed by one code; then the recovery
        codes, shown this once."""
        user = current_user._get_current_object()
        if user.has_second_factor:
            return redirect(url_for(".index"))
        form = CodeForm()
        if form.validate_on_submit():
            try:
                codes = confirm_enrolment(user, form.code.data)
                db.session.commit()
            except DomainError as exc:
                db.session.rollback()
                show_domain_error(form, exc)
            else:
                return self.render("admin/second_factor_codes.html", codes=codes)
        secret = begin_enrolment(user)
        db.session.commit()
        uri = provisioning_uri(user, secret, issuer=ISSUER)
        return self.render(
            "admin/second_factor.html",
            form=form,
            secret=secret,
            qr=Markup(qr_svg(uri)),  # segno's own SVG markup, made from our URI
            required=must_enrol(user),
        )

    @expose("/second-factor/off", methods=("POST",))
    def second_factor_off(self):
        """Turn the second factor off, given a current code (or a recovery code)."""
        user = current_user._get_current_object()
        form = CodeForm()
        if form.validate_on_submit() and check_second_factor(user, form.code.data):
            remove_second_factor(user, user)
            db.session.commit()
            flash(_("Two-factor login is off."), "success")
        else:
            db.session.rollback()
            flash(_("Invalid code: two-factor login is still on."), "error")
        return redirect(url_for(".index"))

    @expose("/logout-everywhere", methods=("POST",))
    def logout_everywhere(self):
        """End every session of this user, this one included."""
        if FlaskForm().validate_on_submit():
            user = current_user._get_current_object()
            end_user_sessions(user, user, "logout_everywhere")
            db.session.commit()
            logout_user()
            login_session.forget()
            return redirect(url_for("auth.login"))
        return redirect(url_for(".index"))

    @expose("/tokens/", methods=("POST",))
    def create_token(self):
        """Make a personal token for oneself and show it on this answer only."""
        user = current_user._get_current_object()
        form = token_form(user, formdata=request.form)
        if form.validate():
            try:
                row, clear = create_personal_token(
                    user,
                    user,
                    form.label.data or "",
                    expires_days=form.expires_days.data,
                    scope=form.scope.data or "",
                )
                db.session.commit()  # stored before it is shown
            except DomainError as exc:
                db.session.rollback()
                show_domain_error(form, exc)
            else:
                response = self._account_page(new_token=(row, clear))
                response.headers["Cache-Control"] = "no-store"
                return response
        return self._account_page(tokens_form=form)

    @expose("/tokens/<int:token_id>/revoke", methods=("POST",))
    def revoke_token(self, token_id: int):
        """Revoke one of one's own tokens; someone else's is 404."""
        user = current_user._get_current_object()
        try:
            revoke_personal_token(user, get_personal_token(user, token_id))
        except NotFound:
            db.session.rollback()
            abort(404)
        db.session.commit()
        flash(_("Token revoked: scripts using it get 401 at once."), "success")
        return redirect(url_for(".index") + "#tokens-heading")

    def _account_page(self, **extra):
        """The account page in answer to a token form: the settings form as stored."""
        return make_response(self._render_account(self._account_form(fill=True), **extra))

    @staticmethod
    def _account_form(fill: bool) -> AccountForm:
        form = AccountForm(formdata=None) if fill else AccountForm()
        form.timezone.choices = [SelectChoice(z, z) for z in sorted(_zone_names())]
        form.locale.choices = [SelectChoice(code, name) for code, name in language_choices()]
        if fill:
            form.timezone.data = current_user.timezone
            form.locale.data = current_user.locale or ""
        return form
