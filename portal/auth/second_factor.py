"""The end of a login: the second step (a TOTP or recovery code) for users who have a second
factor, then the server-side session; and, where ``PORTAL_REQUIRE_2FA`` covers a user who has
not enrolled, nothing but enrolment until they have.

The password step alone opens nothing: it leaves only a short-lived, signed note in the cookie
naming the user who still owes a code.
"""

from __future__ import annotations

import time

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import StringField
from wtforms.validators import InputRequired, Length

from portal import sessions as login_session
from portal.auth.next_path import safe_next
from portal.auth.throttle import login_limits
from portal.extensions import db
from portal.models import User
from portal.services import audit
from portal.services.second_factor import Requirement, check_second_factor, is_required

PENDING = "_2fa_pending"
PENDING_SECONDS = 300
INVALID_CODE = _l("Invalid code.")
# What a user who must enrol may still reach.
ENROLMENT_ENDPOINTS = frozenset(
    {
        "auth.logout",
        "auth.login",
        "account.second_factor",
        "static",
        "admin.static",
        "health.healthz",
    }
)


class SecondFactorForm(FlaskForm):
    code = StringField(
        _l("Code"),
        validators=[InputRequired(), Length(max=32)],
        description=_l("The 6 digits your authenticator app shows, or a recovery code."),
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True},
    )


def after_password(user: User, next_path: str | None) -> Response:
    """The password was right: ask for the second factor, or finish the login."""
    if user.has_second_factor:
        session[PENDING] = {"user_id": user.id, "at": int(time.time()), "next": next_path or ""}
        db.session.commit()
        return redirect(url_for("auth.second_factor"))
    return complete_login(user, next_path)


def complete_login(user: User, next_path: str | None) -> Response:
    session.pop(PENDING, None)
    login_session.begin(user)
    db.session.commit()
    login_user(user)
    if must_enrol(user):
        return redirect(url_for("account.second_factor"))
    return redirect(next_path or url_for("admin.index"))


def pending_user() -> User | None:
    """The user who passed the password step in the last ``PENDING_SECONDS``, if any."""
    pending = session.get(PENDING)
    if not isinstance(pending, dict) or not isinstance(pending.get("user_id"), int):
        return None
    if time.time() - float(pending.get("at", 0)) > PENDING_SECONDS:
        return None
    user = db.session.get(User, pending["user_id"])
    return user if user is not None and user.active and user.has_second_factor else None


def register_second_factor(bp: Blueprint) -> None:
    """Add ``/login/second-factor`` to the auth blueprint and the enrolment gate to the app."""

    @bp.route("/login/second-factor", methods=["GET", "POST"])
    # The password step's limits and counts: both steps share one budget per user.
    @login_limits(lambda: user.username if (user := pending_user()) is not None else "")
    def second_factor():
        user = pending_user()
        if user is None:
            session.pop(PENDING, None)
            return redirect(url_for("auth.login"))
        form = SecondFactorForm()
        error = None
        if form.validate_on_submit():
            if check_second_factor(user, form.code.data):
                return complete_login(user, safe_next(session[PENDING].get("next")))
            audit.record_login_attempt("second_factor_failed", user.username, user)
            db.session.commit()
            error = INVALID_CODE
        elif request.method == "POST":
            error = INVALID_CODE
        return render_template("auth/second_factor.html", form=form, error=error)

    @bp.before_app_request
    def enrolment_gate():
        if request.endpoint in ENROLMENT_ENDPOINTS or request.endpoint is None:
            return None
        if current_app.config["REQUIRE_2FA"] == "none" or not current_user.is_authenticated:
            return None
        if not must_enrol(current_user):
            return None
        if request.path.startswith("/api/"):
            from portal.api.errors import error_response

            return error_response(
                403,
                "second_factor_required",
                "Turn on two-factor login on your account page first.",
            )
        return redirect(url_for("account.second_factor"))


def must_enrol(user: User) -> bool:
    requirement = Requirement(current_app.config["REQUIRE_2FA"])
    return is_required(user, requirement) and not user.has_second_factor
