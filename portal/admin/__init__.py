"""The Flask-Admin site at ``/admin/``: every view is a SecureModelView."""

from __future__ import annotations

from flask import Flask
from flask_admin import Admin, AdminIndexView, expose
from flask_admin.theme import Bootstrap4Theme
from flask_login import current_user

from portal.extensions import db
from portal.models import AuditEvent, Command, Device, PersonalToken, Reading, Schedule, User


class PortalIndexView(AdminIndexView):
    def is_accessible(self) -> bool:
        return current_user.is_authenticated

    def inaccessible_callback(self, name, **kwargs):
        from flask import redirect, request, url_for

        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))

    @expose("/")
    def index(self):
        from portal.admin.dashboard import dashboard_context

        return self.render("admin/dashboard.html", **dashboard_context(current_user))


def init_admin(app: Flask) -> Admin:
    from portal.admin.account import AccountView
    from portal.admin.base import localtime
    from portal.admin.devices import DeviceView
    from portal.admin.people import AuditView, TokenView, UserView
    from portal.admin.records import CommandView, ReadingView
    from portal.admin.schedules import ScheduleView
    from portal.headers import csp_nonce

    app.add_template_filter(localtime, "localtime")

    admin = Admin(
        app,
        name="Portal",
        url="/admin",
        index_view=PortalIndexView(
            name="Dashboard", url="/admin", menu_icon_type="fa", menu_icon_value="fa-tachometer"
        ),
        theme=Bootstrap4Theme(base_template="admin/portal_master.html", swatch="default"),
        csp_nonce_generator=csp_nonce,
    )
    session = db  # Flask-Admin 2 takes the db object
    admin.add_view(DeviceView(Device, session, name="Devices", endpoint="devices"))
    admin.add_view(ScheduleView(Schedule, session, name="Schedules", endpoint="schedules"))
    admin.add_view(CommandView(Command, session, name="Commands", endpoint="commands"))
    admin.add_view(ReadingView(Reading, session, name="Readings", endpoint="readings"))
    admin.add_view(UserView(User, session, name="Users", endpoint="users", category="Admin"))
    admin.add_view(
        TokenView(PersonalToken, session, name="Tokens", endpoint="tokens", category="Admin")
    )
    admin.add_view(AccountView(name="My account", endpoint="account", url="/admin/account"))
    admin.add_view(
        AuditView(AuditEvent, session, name="Audit log", endpoint="audit", category="Admin")
    )
    return admin
