"""Admin views of notifications: channels (a webhook's secret shown once) and their deliveries,
each with every attempt."""

from __future__ import annotations

from flask import abort, flash, redirect, request
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import pgettext
from flask_login import current_user
from markupsafe import Markup, escape
from sqlalchemy import select
from wtforms import BooleanField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length

from portal.admin.base import OwnerFormMixin, SecureModelView
from portal.extensions import db
from portal.models import ChannelKind, NotificationDelivery
from portal.services import channels, notifications
from portal.services.errors import DomainError

FIELDS = ("name", "kind", "url", "address", "enabled")
STATUS_COLORS = {"pending": "secondary", "delivered": "success", "failed": "danger"}


def present_fields(form, *names: str) -> dict:
    """The data of the named fields the form has (an edit form drops the kind's other one)."""
    fields = {name: getattr(form, name, None) for name in names}
    return {name: field.data for name, field in fields.items() if field is not None}


def show_secret_once(name: str, secret: str) -> None:
    text = escape(_("New signing secret for %(name)s — copy it now, it is shown only once:"))
    flash(
        text % {"name": Markup("<strong>%s</strong>") % name}
        + Markup("<br><code class='token-once' data-testid='new-secret'>%s</code>") % secret,
        "warning",
    )


def kind_name(kind: ChannelKind | str) -> str:
    value = kind.value if isinstance(kind, ChannelKind) else kind
    return {"webhook": _("Webhook"), "email": _("Email")}.get(value, value)


def status_badge(value: str) -> Markup:
    names = {
        "pending": pgettext("delivery", "pending"),
        "delivered": pgettext("delivery", "delivered"),
        "failed": pgettext("delivery", "failed"),
    }
    return Markup('<span class="badge badge-{}" data-testid="delivery-status">{}</span>').format(
        STATUS_COLORS.get(value, "light"), names.get(value, value)
    )


class ChannelView(OwnerFormMixin, SecureModelView):
    column_list = ("name", "kind", "target", "owner", "enabled", "created_at")
    column_details_list = (
        "id",
        "name",
        "kind",
        "url",
        "address",
        "owner",
        "enabled",
        "secret_prefix",
        "created_at",
        "updated_at",
    )
    column_export_list = column_details_list
    column_labels = {
        "id": _l("ID"),
        "name": _l("Name"),
        "kind": _l("Kind"),
        "target": _l("Sends to"),
        "url": _l("URL"),
        "address": _l("Email address"),
        "owner": _l("Owner"),
        "enabled": _l("Enabled"),
        "secret_prefix": _l("Secret starts with"),
        "created_at": _l("Created"),
        "updated_at": _l("Updated"),
    }
    column_formatters = {"kind": lambda v, c, m, n: kind_name(m.kind)}
    column_formatters_export = {"kind": lambda v, c, m, n: m.kind.value}
    column_filter_labels = {"owner.username": _l("Owner")}
    column_searchable_list = ("name", "url", "address")
    column_filters = ("kind", "enabled", "owner.username")
    column_sortable_list = ("name", "kind", "enabled", "created_at", ("owner", "owner.username"))
    column_default_sort = ("name", False)
    form_columns = FIELDS
    form_extra_fields = {
        "name": StringField(_l("Name"), validators=[InputRequired(), Length(max=100)]),
        "kind": SelectField(
            _l("Kind"),
            choices=[
                SelectChoice("webhook", _l("Webhook")),
                SelectChoice("email", _l("Email")),
            ],
            default="webhook",
        ),
        "url": StringField(
            _l("URL"),
            validators=[Length(max=channels.MAX_URL)],
            description=_l(
                "Webhook: each notification is a JSON POST here, signed in the header "
                "X-Portal-Signature."
            ),
            render_kw={"placeholder": "https://example.org/hooks/portal"},
        ),
        "address": StringField(
            _l("Email address"),
            validators=[Length(max=channels.MAX_ADDRESS)],
            description=_l("Email: where the notifications go."),
            render_kw={"placeholder": "ops@example.org"},
        ),
        "enabled": BooleanField(_l("Enabled"), default=True),
    }
    details_template = "admin/channel_details.html"

    # ---- row scope: an operator's own channels ----------------------------------------------
    def scope(self, query):
        visible = channels.visible_channel_ids(current_user)
        return query if visible is None else query.filter(self.model.id.in_(visible))

    # ---- forms: the owner for admins; the kind is fixed once made -----------------------------
    def create_form(self, obj=None):
        return self._prepare_owner(super().create_form(obj), str(current_user.id))

    def edit_form(self, obj=None):
        form = super().edit_form(obj)
        if obj is not None:
            del form.kind
            del form["address" if obj.kind is ChannelKind.webhook else "url"]
        return self._prepare_owner(form, str(obj.owner_id) if obj is not None else None)

    # ---- changes through the service ------------------------------------------------------
    def service_create(self, form):
        data = present_fields(form, *FIELDS)
        channel, secret = channels.create_channel(
            current_user,
            name=data["name"],
            kind=data["kind"],
            url=data.get("url") if data["kind"] == "webhook" else None,
            address=data.get("address") if data["kind"] == "email" else None,
            enabled=data["enabled"],
            owner=self._owner(form),
        )
        self._new_secret = (channel.name, secret) if secret else None
        return channel

    def after_model_change(self, form, model, is_created):
        if is_created and getattr(self, "_new_secret", None):
            show_secret_once(*self._new_secret)
            self._new_secret = None

    def service_update(self, form, model):
        fields = present_fields(form, "name", "url", "address", "enabled")
        owner = self._owner(form)
        if owner is not None and owner.id != model.owner_id:
            fields["owner"] = owner
        return channels.update_channel(current_user, model, **fields)

    def service_delete(self, model):
        channels.delete_channel(current_user, model)

    def get_save_return_url(self, model, is_created=False):
        if is_created:
            return self.get_url(".details_view", id=model.id)
        return super().get_save_return_url(model, is_created)

    # ---- the channel's page: its last deliveries, a test, a new secret ----------------------
    def render(self, template, **kwargs):
        model = kwargs.get("model")
        if template == self.details_template and model is not None:
            kwargs["deliveries"] = (
                db.session.execute(
                    select(NotificationDelivery)
                    .where(NotificationDelivery.channel_id == model.id)
                    .order_by(NotificationDelivery.id.desc())
                    .limit(20)
                )
                .scalars()
                .all()
            )
            kwargs["may_change"] = channels.may_change_channel(current_user, model)
            kwargs["status_badge"] = status_badge
            kwargs["kind_name"] = kind_name
        return super().render(template, **kwargs)

    def _act(self, change) -> None:
        channel = self.get_one(request.args.get("id"))
        try:
            result = change(channel)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            if exc.status in (403, 404):
                abort(exc.status)
            flash(exc.message, "error")
            return redirect(self.get_url(".details_view", id=channel.id))
        return channel, result

    @expose("/test/", methods=("POST",))
    def test_view(self):
        done = self._act(lambda c: notifications.send_test(current_user, c))
        if not isinstance(done, tuple):
            return done
        channel, _delivery = done
        flash(
            _("Test notification queued for %(name)s; the next pass sends it.", name=channel.name),
            "success",
        )
        return redirect(self.get_url(".details_view", id=channel.id))

    @expose("/rotate-secret/", methods=("POST",))
    def rotate_secret_view(self):
        done = self._act(lambda c: channels.rotate_channel_secret(current_user, c))
        if not isinstance(done, tuple):
            return done
        channel, secret = done
        show_secret_once(channel.name, secret)
        return redirect(self.get_url(".details_view", id=channel.id))


def _status(view, context, model, name):
    return status_badge(model.status.value)


def _short_error(view, context, model, name):
    text = model.last_error or ""
    return text if len(text) <= 80 else text[:79] + "…"


class DeliveryView(SecureModelView):
    supports_create = supports_edit = supports_delete = False
    simple_list_pager = True
    count_cap = 10_000
    column_list = (
        "id",
        "channel",
        "event",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "created_at",
    )
    column_details_list = (
        "id",
        "channel",
        "event",
        "status",
        "attempts",
        "created_at",
        "last_attempt_at",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "finished_at",
        "body",
    )
    column_export_list = column_details_list
    column_labels = {
        "id": _l("ID"),
        "channel": _l("Channel"),
        "event": _l("Event"),
        "status": _l("Status"),
        "attempts": _l("Attempts"),
        "last_status_code": _l("Last status"),
        "last_error": _l("Last error"),
        "next_attempt_at": _l("Next attempt"),
        "last_attempt_at": _l("Last attempt"),
        "created_at": _l("Created"),
        "finished_at": _l("Finished"),
        "body": _l("Event body"),
        "channel_id": _l("Channel ID"),
    }
    column_formatters = {"status": _status, "last_error": _short_error}
    column_filters = ("status", "event", "created_at", "channel_id", "channel.name")
    column_filter_labels = {"channel.name": _l("Channel name")}
    column_sortable_list = ("id", "event", "status", "attempts", "next_attempt_at", "created_at")
    column_default_sort = ("id", True)
    details_template = "admin/delivery_details.html"

    def scope(self, query):
        visible = channels.visible_channel_ids(current_user)
        return query if visible is None else query.filter(self.model.channel_id.in_(visible))

    def render(self, template, **kwargs):
        if template == self.details_template and kwargs.get("model") is not None:
            kwargs["status_badge"] = status_badge
        return super().render(template, **kwargs)
