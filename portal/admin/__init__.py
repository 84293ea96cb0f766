"""The Flask-Admin site at ``/admin/``: every view is a SecureModelView."""

from __future__ import annotations

from flask import Flask, abort, request
from flask_admin import Admin, AdminIndexView, expose
from flask_admin.theme import Bootstrap4Theme
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from portal.admin.live import live_answer, live_poller, login_redirect
from portal.extensions import db
from portal.models import (
    Alert,
    AuditEvent,
    Command,
    Device,
    NotificationChannel,
    NotificationDelivery,
    PersonalToken,
    Reading,
    Rule,
    Schedule,
    User,
)


class PortalIndexView(AdminIndexView):
    def is_accessible(self) -> bool:
        return current_user.is_authenticated

    def inaccessible_callback(self, name, **kwargs):
        return login_redirect()

    @expose("/")
    def index(self):
        from portal.admin.dashboard import dashboard_context

        return self.render("admin/dashboard.html", **dashboard_context(current_user))

    @expose("/live/")
    def live_view(self):
        """The dashboard's live part, for its poller (portal/admin/live.py)."""
        from portal.admin.dashboard import dashboard_context

        context = dashboard_context(current_user)
        return live_answer([self.render("admin/parts/dashboard.html", **context)])


def init_admin(app: Flask) -> Admin:
    from portal.admin.account import AccountView
    from portal.admin.alerts import AlertView
    from portal.admin.arguments import unsafe_return_url
    from portal.admin.base import localtime
    from portal.admin.devices import DeviceView
    from portal.admin.error_pages import init_error_pages
    from portal.admin.notifications import ChannelView, DeliveryView
    from portal.admin.people import AuditView, TokenView, UserView
    from portal.admin.records import CommandView, ReadingView
    from portal.admin.rules import RuleView
    from portal.admin.schedules import ScheduleView
    from portal.headers import csp_nonce

    app.add_template_filter(localtime, "localtime")
    app.add_template_global(live_poller, "live_poller")

    @app.before_request
    def refuse_unsafe_return_url():
        if request.path.startswith("/admin") and unsafe_return_url(request.values.getlist("url")):
            abort(400, "The return address (url) holds a control character.")

    admin = Admin(
        app,
        name="Portal",
        url="/admin",
        index_view=PortalIndexView(
            name=_l("Dashboard"), url="/admin", menu_icon_type="fa", menu_icon_value="fa-tachometer"
        ),
        # Fluid: the menu of an admin (ten entries) fits one line on a 1280-pixel screen.
        theme=Bootstrap4Theme(
            base_template="admin/portal_master.html", swatch="default", fluid=True
        ),
        csp_nonce_generator=csp_nonce,
    )
    session = db  # Flask-Admin 2 takes the db object
    admin_only = _l("Admin")  # the menu category of the admin-only views
    admin.add_view(DeviceView(Device, session, name=_l("Devices"), endpoint="devices"))
    admin.add_view(ScheduleView(Schedule, session, name=_l("Schedules"), endpoint="schedules"))
    admin.add_view(CommandView(Command, session, name=_l("Commands"), endpoint="commands"))
    admin.add_view(ReadingView(Reading, session, name=_l("Readings"), endpoint="readings"))
    admin.add_view(AlertView(Alert, session, name=_l("Alerts"), endpoint="alerts"))
    admin.add_view(RuleView(Rule, session, name=_l("Rules"), endpoint="rules"))
    notifications = _l("Notifications")  # the menu category of channels and their deliveries
    admin.add_view(
        ChannelView(
            NotificationChannel,
            session,
            name=_l("Channels"),
            endpoint="channels",
            category=notifications,
        )
    )
    admin.add_view(
        DeliveryView(
            NotificationDelivery,
            session,
            name=_l("Deliveries"),
            endpoint="deliveries",
            category=notifications,
        )
    )
    admin.add_view(UserView(User, session, name=_l("Users"), endpoint="users", category=admin_only))
    admin.add_view(
        TokenView(PersonalToken, session, name=_l("Tokens"), endpoint="tokens", category=admin_only)
    )
    admin.add_view(AccountView(name=_l("My account"), endpoint="account", url="/admin/account"))
    admin.add_view(
        AuditView(AuditEvent, session, name=_l("Audit log"), endpoint="audit", category=admin_only)
    )
    init_error_pages(app, admin)
    return admin
