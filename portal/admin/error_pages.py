"""The HTML error pages (403, 404, 405, 500): the portal's layout and menu, and a way back.

Under ``/api/`` the contract's JSON body stays (``portal.api.errors``): a handler for a status
is chosen before the one for ``HTTPException``, so these hand API requests back to it. 400 keeps
its own pages (the CSRF page is a 400; a status handler would be chosen before its handler).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, abort, current_app, request
from flask_admin import Admin, BaseView, expose
from flask_babel import lazy_gettext as _l
from werkzeug.exceptions import HTTPException

from portal.api.errors import http_error, is_api_request

PAGES = {
    403: (_l("Not allowed"), _l("Your role may not do this here.")),
    404: (_l("Page not found"), _l("There is no such page, or it is not yours to see.")),
    405: (_l("Not allowed here"), _l("This address does not take this kind of request.")),
    500: (
        _l("Something went wrong"),
        _l("The server met an error and has logged it. Try again in a moment."),
    ),
}


class ErrorPage(BaseView):
    """Flask-Admin's rendering (layout, menu, CSP nonce) for a page of no view: never added to
    the admin, so it has no menu entry, and the one view Flask-Admin insists on has no route."""

    def __init__(self, admin: Admin) -> None:
        super().__init__(name=_l("Error"))
        self.admin = admin

    @expose("/")
    def index(self):
        abort(404)


def init_error_pages(app: Flask, admin: Admin) -> None:
    view = ErrorPage(admin)

    def error_page(exc: HTTPException):
        if is_api_request():
            return http_error(exc)
        status = exc.code or 500
        heading, message = PAGES[status]
        try:
            page = view.render(
                "admin/error.html",
                status=status,
                heading=heading,
                message=message,
                back_url=_previous_page(),
            )
        except Exception:
            # The layout reads the user (the database); when that is what failed, the plain
            # page still says something.
            current_app.logger.exception("error page for %d failed", status)
            return exc
        return page, status, _allow_header(exc)

    for status in PAGES:
        app.register_error_handler(status, error_page)


def _previous_page() -> str | None:
    """The referring page when it is one of ours and not this one."""
    referrer = request.referrer
    if not referrer or referrer == request.url:
        return None
    here, there = urlsplit(request.host_url), urlsplit(referrer)
    if (there.scheme, there.netloc) != (here.scheme, here.netloc):
        return None
    return referrer


def _allow_header(exc: HTTPException) -> dict[str, str]:
    methods = getattr(exc, "valid_methods", None)
    return {"Allow": ", ".join(sorted(methods))} if methods else {}
