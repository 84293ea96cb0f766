"""The auth blueprint: ``/login`` and ``/logout``."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import logout_user
from flask_wtf.csrf import CSRFError

from portal import sessions as login_session
from portal.auth.forms import LoginForm, LogoutForm
from portal.auth.next_path import safe_next
from portal.auth.second_factor import after_password, pending_user, register_second_factor
from portal.auth.throttle import login_limits
from portal.extensions import db
from portal.services import audit
from portal.services.sessions import end_session
from portal.services.users import authenticate

bp = Blueprint("auth", __name__, template_folder="templates")

FAILED = _l("Invalid username or password.")
# Flask-WTF's reasons for refusing a form, which it does not translate itself.
CSRF_REASONS = {
    "The CSRF token is missing.": _l("The CSRF token is missing."),
    "The CSRF session token is missing.": _l("The CSRF session token is missing."),
    "The CSRF token has expired.": _l("The CSRF token has expired."),
    "The CSRF token is invalid.": _l("The CSRF token is invalid."),
    "The CSRF tokens do not match.": _l("The CSRF tokens do not match."),
}


@bp.route("/login", methods=["GET", "POST"])
@login_limits(lambda: request.form.get("username") or "")
def login():
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    error = None
    if form.validate_on_submit():
        user = authenticate(form.username.data, form.password.data)
        if user is not None:
            return after_password(user, safe_next(form.next.data))
        audit.record_login_attempt("login_failed", (form.username.data or "").strip()[:64])
        db.session.commit()
        error = FAILED
    elif request.method == "POST":
        error = FAILED
    return render_template("auth/login.html", form=form, error=error)


@bp.post("/logout")
def logout():
    form = LogoutForm()
    if form.validate_on_submit():
        end_session(login_session.current_key(), "logout")
        db.session.commit()
        logout_user()
        login_session.forget()
    return redirect(url_for("auth.login"))


@bp.app_errorhandler(CSRFError)
def csrf_failed(exc: CSRFError):
    if request.path.startswith("/api/"):
        from portal.api.errors import error_response

        return error_response(400, "csrf_failed", "The CSRF token is missing or invalid.")
    reason = CSRF_REASONS.get(exc.description, exc.description)
    return render_template("auth/csrf_failed.html", reason=reason), 400


register_second_factor(bp)


@bp.app_errorhandler(429)
def too_many(exc):
    if request.path in ("/login", "/login/second-factor") and request.method == "POST":
        pending = pending_user() if request.path != "/login" else None
        name = pending.username if pending is not None else request.form.get("username") or ""
        audit.record_login_attempt("login_throttled", name[:64], pending)
        db.session.commit()
    if request.path.startswith("/api/"):
        from portal.api.errors import error_response

        response = error_response(429, "rate_limited", "Too many requests; try again later.")
    else:
        form = LoginForm()
        response = current_app.make_response(
            (
                render_template(
                    "auth/login.html",
                    form=form,
                    error=_("Too many failed attempts. Wait a few minutes and try again."),
                ),
                429,
            )
        )
    return response
