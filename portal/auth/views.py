"""The auth blueprint: ``/login`` and ``/logout``."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import login_user, logout_user
from flask_wtf.csrf import CSRFError

from portal.auth.forms import LoginForm, LogoutForm
from portal.extensions import db, limiter
from portal.services.users import authenticate

bp = Blueprint("auth", __name__, template_folder="templates")

FAILED = "Invalid username or password."


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a local path (``/admin/...``), else None: no open redirects."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(c) < 32 for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def _login_limit() -> str:
    return current_app.config["LOGIN_LIMIT"]


def _username_key() -> str:
    return "login-user:" + (request.form.get("username") or "").strip().lower()[:64]


def _failed(response) -> bool:
    # Only failed attempts count: a success is a redirect.
    return response.status_code != 302


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(
    _login_limit,
    methods=["POST"],
    deduct_when=_failed,
    key_func=lambda: "login-addr:" + (request.remote_addr or ""),
)
@limiter.limit(_login_limit, methods=["POST"], deduct_when=_failed, key_func=_username_key)
def login():
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    error = None
    if form.validate_on_submit():
        user = authenticate(form.username.data, form.password.data)
        if user is not None:
            db.session.commit()
            login_user(user)
            return redirect(safe_next(form.next.data) or url_for("admin.index"))
        error = FAILED
    elif request.method == "POST":
        error = FAILED
    return render_template("auth/login.html", form=form, error=error)


@bp.post("/logout")
def logout():
    form = LogoutForm()
    if form.validate_on_submit():
        logout_user()
    return redirect(url_for("auth.login"))


@bp.app_errorhandler(CSRFError)
def csrf_failed(exc: CSRFError):
    if request.path.startswith("/api/"):
        from portal.api.errors import error_response

        return error_response(400, "csrf_failed", "The CSRF token is missing or invalid.")
    return render_template("auth/csrf_failed.html", reason=exc.description), 400


@bp.app_errorhandler(429)
def too_many(exc):
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
                    error="Too many failed attempts. Wait a few minutes and try again.",
                ),
                429,
            )
        )
    return response
