"""Channels and deliveries in the admin: made through the service (the secret shown once),
scoped like devices, and every attempt of a delivery on its page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.models import NotificationChannel, NotificationDelivery, utcnow
from portal.services import channels
from tests import factories
from tests.conftest import csrf_token

SECRET_RE = re.compile(r"data-testid='new-secret'>(whsec_[^<]+)</code>")


@pytest.fixture
def own_channel(operator):
    return factories.NotificationChannelFactory(owner=operator, name="oscar-hook")


@pytest.fixture
def other_channel(other_operator):
    return factories.NotificationChannelFactory(owner=other_operator, name="olga-hook")


@pytest.fixture
def deliveries(own_channel, other_channel):
    """A delivery with two failed attempts and a success, for each operator's channel."""
    made = []
    for channel in (own_channel, other_channel):
        row = factories.NotificationDeliveryFactory(
            channel=channel, event="alert.raised", attempts=3, status="delivered"
        )
        start = utcnow() - timedelta(minutes=5)
        for n, (code, error) in enumerate(
            [(None, "ConnectionRefusedError: [Errno 111] Connection refused"), (503, "HTTP 503")]
        ):
            factories.NotificationAttemptFactory(
                delivery=row,
                attempted_at=start + timedelta(seconds=10 * n),
                status_code=code,
                error=error,
            )
        factories.NotificationAttemptFactory(
            delivery=row,
            attempted_at=start + timedelta(seconds=60),
            status_code=204,
            error="",
            ok=True,
        )
        made.append(row)
    return made


def post_form(client, path, data, follow=False):
    data = {**data, "csrf_token": csrf_token(client, "/admin/account/")}
    return client.post(path, data=data, follow_redirects=follow)


def test_an_operator_makes_a_webhook_channel_and_sees_its_secret_once(
    client, db, login_as, operator
):
    login_as(operator)
    response = post_form(
        client,
        "/admin/channels/new/",
        {"name": "ops hook", "kind": "webhook", "url": "https://example.org/hook", "enabled": "y"},
        follow=True,
    )
    html = response.get_data(as_text=True)
    (secret,) = SECRET_RE.findall(html)
    channel = db.session.scalar(select(NotificationChannel))
    assert (channel.name, channel.owner_id, channel.url) == (
        "ops hook",
        operator.id,
        "https://example.org/hook",
    )
    assert channels.channel_secret(channel.secret) == secret
    again = client.get(f"/admin/channels/details/?id={channel.id}").get_data(as_text=True)
    assert secret not in again and channel.secret_prefix in again


def test_an_email_channel_form_needs_an_address(client, db, login_as, operator):
    login_as(operator)
    html = post_form(
        client, "/admin/channels/new/", {"name": "mail", "kind": "email", "address": ""}
    ).get_data(as_text=True)
    assert "An address is required for an email channel." in html
    assert db.session.scalar(select(NotificationChannel)) is None


def test_editing_changes_the_url_but_never_the_kind(client, db, login_as, operator, own_channel):
    login_as(operator)
    form = client.get(f"/admin/channels/edit/?id={own_channel.id}").get_data(as_text=True)
    assert 'name="kind"' not in form and 'name="address"' not in form
    post_form(
        client,
        f"/admin/channels/edit/?id={own_channel.id}",
        {"name": "oscar-hook", "url": "https://example.org/changed", "enabled": "y"},
    )
    db.session.expire_all()
    assert db.session.get(NotificationChannel, own_channel.id).url == "https://example.org/changed"


def test_an_admin_chooses_the_owner(client, db, login_as, admin, operator):
    login_as(admin)
    post_form(
        client,
        "/admin/channels/new/",
        {"name": "for oscar", "kind": "email", "address": "o@example.org", "owner": operator.id},
    )
    assert db.session.scalar(select(NotificationChannel)).owner_id == operator.id


def test_an_operator_lists_only_their_own_channels(
    client, login_as, operator, own_channel, other_channel
):
    login_as(operator)
    html = client.get("/admin/channels/").get_data(as_text=True)
    assert "oscar-hook" in html and "olga-hook" not in html


@pytest.mark.parametrize("page", ["details", "edit"])
def test_another_operators_channel_is_404(client, login_as, operator, other_channel, page):
    login_as(operator)
    assert client.get(f"/admin/channels/{page}/?id={other_channel.id}").status_code == 404


@pytest.mark.parametrize("action", ["test", "rotate-secret"])
def test_another_operators_channel_cannot_be_tested_or_renewed(
    client, db, login_as, operator, other_channel, action
):
    login_as(operator)
    response = post_form(client, f"/admin/channels/{action}/?id={other_channel.id}", {})
    assert response.status_code == 404
    assert db.session.scalar(select(NotificationDelivery)) is None


def test_a_viewer_reads_channels_but_may_not_make_or_test_them(
    client, db, login_as, viewer, own_channel
):
    login_as(viewer)
    assert "oscar-hook" in client.get("/admin/channels/").get_data(as_text=True)
    assert client.get("/admin/channels/new/").status_code == 403
    assert client.get(f"/admin/channels/edit/?id={own_channel.id}").status_code == 403
    details = client.get(f"/admin/channels/details/?id={own_channel.id}").get_data(as_text=True)
    assert "/admin/channels/test/" not in details
    response = post_form(client, f"/admin/channels/test/?id={own_channel.id}", {})
    assert response.status_code == 403
    assert db.session.scalar(select(NotificationDelivery)) is None


def test_the_test_button_queues_a_test_notification(client, db, login_as, operator, own_channel):
    login_as(operator)
    html = post_form(
        client, f"/admin/channels/test/?id={own_channel.id}", {}, follow=True
    ).get_data(as_text=True)
    assert "Test notification queued for oscar-hook" in html
    queued = db.session.scalar(select(NotificationDelivery))
    assert (queued.channel_id, queued.event) == (own_channel.id, "notification.test")


def test_renewing_the_secret_shows_the_new_one_once(client, db, login_as, operator, own_channel):
    login_as(operator)
    html = post_form(
        client, f"/admin/channels/rotate-secret/?id={own_channel.id}", {}, follow=True
    ).get_data(as_text=True)
    (secret,) = SECRET_RE.findall(html)
    db.session.expire_all()
    stored = db.session.get(NotificationChannel, own_channel.id).secret
    assert secret != own_channel.clear_secret and channels.channel_secret(stored) == secret


def test_an_operator_sees_only_their_channels_deliveries(client, login_as, operator, deliveries):
    mine, theirs = deliveries
    login_as(operator)
    html = client.get("/admin/deliveries/").get_data(as_text=True)
    assert f"/admin/deliveries/details/?id={mine.id}" in html
    assert f"/admin/deliveries/details/?id={theirs.id}" not in html
    assert client.get(f"/admin/deliveries/details/?id={theirs.id}").status_code == 404
    export = client.get("/admin/deliveries/export/csv/").get_data(as_text=True)
    assert "olga-hook" not in export and "oscar-hook" in export


def test_a_deliverys_page_shows_every_attempt(client, login_as, operator, deliveries):
    login_as(operator)
    html = client.get(f"/admin/deliveries/details/?id={deliveries[0].id}").get_data(as_text=True)
    table = html.split('data-testid="delivery-attempts"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr data-attempt-id=") == 3
    assert "Connection refused" in table and "HTTP 503" in table and ">204<" in table


def test_the_channel_page_lists_its_deliveries(client, login_as, operator, deliveries):
    login_as(operator)
    channel_id = deliveries[0].channel_id
    html = client.get(f"/admin/channels/details/?id={channel_id}").get_data(as_text=True)
    assert f"/admin/deliveries/details/?id={deliveries[0].id}" in html


def test_deliveries_cannot_be_made_or_changed_by_hand(client, login_as, admin, deliveries):
    login_as(admin)
    assert client.get("/admin/deliveries/new/").status_code == 403
    assert client.get(f"/admin/deliveries/edit/?id={deliveries[0].id}").status_code == 403


@pytest.mark.parametrize(
    "path,words",
    [
        ("/admin/channels/", ["Benachrichtigungen", "Kanäle", "Sendet an"]),
        ("/admin/deliveries/", ["Zustellungen", "Nächster Versuch", "Letzter Fehler"]),
    ],
)
def test_the_notification_pages_speak_german(app, client, login_as, admin, path, words):
    from flask_babel import refresh

    app.before_request(refresh)
    login_as(admin)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "de-DE,de;q=0.9"
    html = client.get(path).get_data(as_text=True)
    for word in words:
        assert word in html, word


def test_the_never_500_crawler_visits_the_notification_pages(app):
    from tests.admin.test_never_500 import admin_paths, model_views

    endpoints = {view.endpoint for view in model_views(app)}
    assert {"channels", "deliveries"} <= endpoints
    posts = admin_paths(app, "POST")
    assert "/admin/channels/test/" in posts and "/admin/channels/rotate-secret/" in posts
