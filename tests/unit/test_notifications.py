"""The notification outbox against real receivers on 127.0.0.1: signed webhooks, email through
aiosmtpd, retries with back-off for 24 h, every attempt recorded, bounded passes, restarts."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import (
    DeliveryStatus,
    NotificationAttempt,
    NotificationDelivery,
    Role,
    utcnow,
)
from portal.scheduling import runner
from portal.services import channels, notifications, senders
from portal.services.errors import Conflict, InvalidInput
from tests import factories
from tests.conftest import make_app
from tests.receivers import Receiver, SmtpSink

NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def other_receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp(app, monkeypatch):
    sink = SmtpSink().start()
    for name, value in {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": sink.port,
        "SMTP_FROM": "portal@example.org",
    }.items():
        monkeypatch.setitem(app.config, name, value)
    yield sink
    sink.stop()


@pytest.fixture
def owner(app):
    return factories.UserFactory(username="owen", role=Role.operator)


def webhook(owner, url: str, name: str = "ops hook"):
    """A webhook channel made through the service; returns (channel, its clear secret)."""
    channel, secret = channels.create_channel(owner, name=name, kind="webhook", url=url)
    db.session.commit()
    return channel, secret


def alert_event(event: str = notifications.ALERT_RAISED) -> dict:
    return notifications.event_body(
        event,
        at=NOW,
        alert={"id": 12, "rule_id": 3, "device_id": 7, "state": "active", "value": 81.5},
        rule={"id": 3, "name": "Boiler too hot", "kind": "threshold", "severity": "critical"},
        device={"id": 7, "name": "boiler"},
    )


def queue(channel_ids, now=NOW, event=None) -> list[int]:
    deliveries = notifications.notify(channel_ids, event or alert_event(), now)
    db.session.commit()
    return [d.id for d in deliveries]


def delivery(delivery_id: int) -> NotificationDelivery:
    db.session.expire_all()
    return db.session.get(NotificationDelivery, delivery_id)


def attempts_of(delivery_id: int) -> list[NotificationAttempt]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(NotificationAttempt)
            .where(NotificationAttempt.delivery_id == delivery_id)
            .order_by(NotificationAttempt.id)
        )
    )


# ---- back-off arithmetic -------------------------------------------------------------------


@pytest.mark.parametrize(
    "failures,longest",
    [(1, 10), (2, 30), (3, 90), (4, 270), (5, 810), (6, 2430), (7, 3600), (30, 3600)],
)
def test_backoff_grows_threefold_from_10_seconds_to_an_hour(failures, longest):
    assert notifications.backoff_seconds(failures, 0.0) == longest
    assert notifications.backoff_seconds(failures, 0.999) == pytest.approx(longest * 0.8, 0.01)


def test_the_next_attempt_is_the_backoff_after_the_failure():
    failed = NOW + timedelta(minutes=1)
    assert notifications.next_attempt_at(NOW, failed, 2, 0.0) == failed + timedelta(seconds=30)


def test_the_last_attempt_falls_on_the_end_of_the_24_hour_window():
    failed = NOW + timedelta(hours=23, minutes=50)
    assert notifications.next_attempt_at(NOW, failed, 20, 0.0) == NOW + timedelta(hours=24)


@pytest.mark.parametrize("after", [timedelta(hours=24), timedelta(hours=24, seconds=1)])
def test_a_failure_at_or_after_24_hours_gives_up(after):
    assert notifications.next_attempt_at(NOW, NOW + after, 30, 0.0) is None


# ---- queueing ----------------------------------------------------------------------------------


def test_notify_writes_one_pending_delivery_per_enabled_channel(app, owner, receiver):
    one, _ = webhook(owner, receiver.url, "one")
    two, _ = webhook(owner, receiver.url, "two")
    off = factories.NotificationChannelFactory(owner=owner, enabled=False)
    ids = queue([one.id, two.id, off.id, 999_999, one.id])
    rows = [delivery(i) for i in ids]
    assert sorted(r.channel_id for r in rows) == sorted([one.id, two.id])
    assert {(r.status, r.attempts, r.next_attempt_at) for r in rows} == {
        (DeliveryStatus.pending, 0, NOW)
    }
    assert rows[0].body == rows[1].body and rows[0].body["event"] == "alert.raised"


def test_notify_belongs_to_the_callers_transaction(app, owner, receiver):
    channel, _ = webhook(owner, receiver.url)
    notifications.notify([channel.id], alert_event(), NOW)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(NotificationDelivery)) == 0


@pytest.mark.parametrize(
    "event",
    [{"event": "alert.exploded"}, {"event": "alert.raised", "alert": {"value": float("nan")}}],
)
def test_notify_refuses_what_it_cannot_send(app, owner, receiver, event):
    channel, _ = webhook(owner, receiver.url)
    with pytest.raises(InvalidInput) as caught:
        notifications.notify([channel.id], event, NOW)
    assert set(caught.value.fields) == {"event"}


def test_the_event_body_is_plain_json_with_rfc3339_times(app):
    body = notifications.event_body(
        "alert.resolved", at=NOW, alert={"resolved_at": NOW + timedelta(minutes=5)}
    )
    assert body["at"] == "2026-12-05T10:00:00Z"
    assert body["alert"]["resolved_at"] == "2026-12-05T10:05:00Z"
    assert len(body["id"]) == 32 and json.loads(json.dumps(body)) == body


# ---- webhooks ----------------------------------------------------------------------------------


def test_a_webhook_delivery_is_a_json_post_signed_with_the_channels_secret(app, owner, receiver):
    channel, secret = webhook(owner, receiver.url)
    (delivery_id,) = queue([channel.id])
    result = notifications.deliver_due(NOW)
    assert result.delivered == 1
    (request,) = receiver.requests
    expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Portal-Signature"] == expected
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Portal-Event"] == "alert.raised"
    assert request.headers["X-Portal-Delivery"] == str(delivery_id)
    assert json.loads(request.body) == delivery(delivery_id).body
    assert json.loads(request.body)["rule"]["name"] == "Boiler too hot"


def test_a_signature_with_another_secret_does_not_match(app, owner, receiver):
    channel, secret = webhook(owner, receiver.url)
    queue([channel.id])
    notifications.deliver_due(NOW)
    (request,) = receiver.requests
    forged = "sha256=" + hmac.new(b"whsec_other", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Portal-Signature"] != forged


def test_a_delivered_webhook_records_its_one_attempt(app, owner, receiver):
    channel, _ = webhook(owner, receiver.url)
    (delivery_id,) = queue([channel.id])
    notifications.deliver_due(NOW)
    row = delivery(delivery_id)
    assert (row.status, row.attempts, row.next_attempt_at) == (DeliveryStatus.delivered, 1, None)
    assert row.finished_at >= NOW and row.last_status_code == 204
    (attempt,) = attempts_of(delivery_id)
    assert (attempt.ok, attempt.status_code, attempt.error) == (True, 204, "")
    assert attempt.attempted_at >= NOW and attempt.duration_ms >= 0


def test_nothing_is_sent_before_it_is_due(app, owner, receiver):
    channel, _ = webhook(owner, receiver.url)
    queue([channel.id], now=NOW)
    assert notifications.deliver_due(NOW - timedelta(seconds=1)) == notifications.PassResult()
    assert receiver.requests == []


def test_a_500_is_retried_with_back_off_until_it_succeeds(app, owner, receiver):
    channel, _ = webhook(owner, receiver.url)
    (delivery_id,) = queue([channel.id])
    receiver.mode = "fail"
    assert notifications.deliver_due(NOW).retrying == 1
    first = delivery(delivery_id)
    assert first.status is DeliveryStatus.pending and first.attempts == 1
    assert NOW + timedelta(seconds=8) <= first.next_attempt_at <= NOW + timedelta(seconds=10.1)
    assert notifications.deliver_due(first.next_attempt_at - timedelta(seconds=1)).retrying == 0
    assert notifications.deliver_due(first.next_attempt_at).retrying == 1
    second = delivery(delivery_id)
    wait = second.next_attempt_at - second.last_attempt_at
    assert timedelta(seconds=24) <= wait <= timedelta(seconds=30)
    receiver.mode = "ok"
    assert notifications.deliver_due(second.next_attempt_at).delivered == 1
    assert delivery(delivery_id).status is DeliveryStatus.delivered
    outcomes = [(a.ok, a.status_code, a.error) for a in attempts_of(delivery_id)]
    assert outcomes == [(False, 500, "HTTP 500"), (False, 500, "HTTP 500"), (True, 204, "")]
    assert len(receiver.requests) == 3


def test_a_delivery_that_keeps_failing_is_given_up_after_24_hours(app, owner, receiver):
    channel, _ = webhook(owner, receiver.url)
    (delivery_id,) = queue([channel.id])
    receiver.mode = "fail"
    at = NOW
    while (row := delivery(delivery_id)).status is DeliveryStatus.pending:
        at = row.next_attempt_at
        notifications.deliver_due(at)
    assert row.status is DeliveryStatus.failed and row.next_attempt_at is None
    assert at == NOW + timedelta(hours=24)  # the last try fell on the end of the window
    attempts = attempts_of(delivery_id)
    assert len(attempts) == row.attempts == len(receiver.requests)
    assert 25 <= row.attempts <= 40  # ~1 h of growing waits, then about hourly
    gaps = [b.attempted_at - a.attempted_at for a, b in zip(attempts, attempts[1:], strict=False)]
    assert max(gaps) <= timedelta(hours=1, seconds=1)


def test_a_receiver_that_is_gone_is_an_error_and_a_retry(app, owner, receiver):
    channel, _ = webhook(owner, receiver.url)
    (delivery_id,) = queue([channel.id])
    receiver.stop()
    assert notifications.deliver_due(NOW).retrying == 1
    (attempt,) = attempts_of(delivery_id)
    assert attempt.status_code is None and "Connection refused" in attempt.error
    assert delivery(delivery_id).last_error == attempt.error


def test_a_hanging_receiver_does_not_hold_up_a_healthy_one(
    app, owner, receiver, other_receiver, monkeypatch
):
    monkeypatch.setattr(senders, "SEND_TIMEOUT", 1.0)
    hanging, _ = webhook(owner, receiver.url, "hanging")
    healthy, _ = webhook(owner, other_receiver.url, "healthy")
    receiver.mode = "hang"
    hanging_id, healthy_id = queue([hanging.id, healthy.id])
    started = time.monotonic()
    result = notifications.deliver_due(NOW)
    took = time.monotonic() - started
    assert (result.delivered, result.retrying) == (1, 1)
    assert delivery(healthy_id).status is DeliveryStatus.delivered
    # The healthy channel got its POST while the hanging one was still waiting for an answer.
    assert other_receiver.requests[0].at < receiver.requests[0].at + 1.0
    (hung,) = attempts_of(hanging_id)
    assert hung.error == "No answer within 1 s." and hung.status_code is None
    assert took < 1.0 + senders.ABANDON_AFTER


def test_the_scheduler_pass_stays_bounded_however_many_receivers_hang(
    app, owner, receiver, monkeypatch
):
    monkeypatch.setattr(senders, "SEND_TIMEOUT", 0.5)
    monkeypatch.setattr(senders, "MAX_WORKERS", 2)
    monkeypatch.setattr(notifications, "PASS_BUDGET_SECONDS", 1.0)
    channel, _ = webhook(owner, receiver.url)
    receiver.mode = "hang"
    ids = [queue([channel.id])[0] for _ in range(8)]
    started = time.monotonic()
    runner.tick(NOW)
    took = time.monotonic() - started
    assert took < 1.0 + 0.5 + 1.0  # the budget, one send's timeout, room for the machine
    rows = [delivery(i) for i in ids]
    tried = [r for r in rows if r.attempts == 1]
    postponed = [r for r in rows if r.attempts == 0]
    assert 2 <= len(tried) <= 4 and len(tried) + len(postponed) == 8
    # Not begun in this pass: no attempt recorded, due again for the next pass.
    assert {(r.status, r.next_attempt_at) for r in postponed} == {(DeliveryStatus.pending, NOW)}


def test_a_disabled_channel_is_not_sent_to(app, owner, receiver):
    channel, _ = webhook(owner, receiver.url)
    (delivery_id,) = queue([channel.id])
    channels.update_channel(owner, channel, enabled=False)
    db.session.commit()
    notifications.deliver_due(NOW)
    assert receiver.requests == []
    (attempt,) = attempts_of(delivery_id)
    assert attempt.error == "The channel is disabled."


def test_a_renewed_secret_signs_the_retries(app, owner, receiver):
    channel, old = webhook(owner, receiver.url)
    (delivery_id,) = queue([channel.id])
    receiver.mode = "fail"
    notifications.deliver_due(NOW)
    new = channels.rotate_channel_secret(owner, channel)
    db.session.commit()
    receiver.mode = "ok"
    notifications.deliver_due(delivery(delivery_id).next_attempt_at)
    first, second = receiver.requests
    assert first.body == second.body
    assert second.headers["X-Portal-Signature"] == senders.sign(new, second.body)
    assert first.headers["X-Portal-Signature"] == senders.sign(old, first.body)


def test_a_secret_sealed_under_another_secret_key_is_an_error_not_a_send(
    app, owner, receiver, monkeypatch
):
    channel, _ = webhook(owner, receiver.url)
    (delivery_id,) = queue([channel.id])
    monkeypatch.setitem(app.config, "SECRET_KEY", "a-new-secret-key")
    notifications.deliver_due(NOW)
    assert receiver.requests == []
    assert "cannot be decrypted" in attempts_of(delivery_id)[0].error


def test_delivery_survives_a_restart(app, owner, receiver, database_url, tmp_path):
    channel, secret = webhook(owner, receiver.url)
    (delivery_id,) = queue([channel.id])
    db.session.remove()
    db.engine.dispose()
    restarted = make_app(tmp_path / "restarted", database_url)
    with restarted.app_context():
        assert notifications.deliver_due(NOW).delivered == 1
        db.session.remove()
        db.engine.dispose()
    (request,) = receiver.requests
    assert request.headers["X-Portal-Signature"] == senders.sign(secret, request.body)
    assert delivery(delivery_id).status is DeliveryStatus.delivered


def test_a_pass_that_dies_while_sending_leaves_its_claim_to_run_out(
    app, owner, receiver, monkeypatch
):
    channel, _ = webhook(owner, receiver.url)
    (delivery_id,) = queue([channel.id])

    def die(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(senders, "send_all", die)
    with pytest.raises(KeyboardInterrupt):
        notifications.deliver_due(NOW)
    monkeypatch.undo()
    claim_ends = NOW + timedelta(seconds=notifications.CLAIM_SECONDS)
    assert delivery(delivery_id).next_attempt_at == claim_ends
    assert notifications.deliver_due(claim_ends - timedelta(seconds=1)).delivered == 0
    assert notifications.deliver_due(claim_ends).delivered == 1
    assert len(receiver.requests) == 1


def test_two_passes_at_once_send_each_delivery_once(app, owner, receiver):
    channel, _ = webhook(owner, receiver.url)
    ids = [queue([channel.id])[0] for _ in range(20)]
    db.session.remove()
    results = []

    def one_pass():
        with app.app_context():
            results.append(notifications.deliver_due(NOW, limit=20))
            db.session.remove()

    passes = [threading.Thread(target=one_pass) for _ in range(2)]
    for thread in passes:
        thread.start()
    for thread in passes:
        thread.join()
    assert sum(r.delivered for r in results) == 20
    sent = sorted(int(r.headers["X-Portal-Delivery"]) for r in receiver.requests)
    assert sent == sorted(ids)


def test_the_scheduler_pass_delivers_what_is_due(app, owner, receiver):
    channel, _ = webhook(owner, receiver.url)
    (delivery_id,) = queue([channel.id])
    runner.tick(NOW)
    assert delivery(delivery_id).status is DeliveryStatus.delivered
    assert len(receiver.requests) == 1


def test_a_test_notification_is_queued_for_a_channel_one_may_use(app, owner, receiver):
    channel, _ = webhook(owner, receiver.url)
    queued = notifications.send_test(owner, channel, NOW)
    db.session.commit()
    notifications.deliver_due(NOW)
    body = json.loads(receiver.requests[0].body)
    assert body["event"] == "notification.test" and body["channel"]["id"] == channel.id
    assert delivery(queued.id).status is DeliveryStatus.delivered


def test_a_disabled_channel_cannot_be_tested(app, owner, receiver):
    channel = factories.NotificationChannelFactory(owner=owner, enabled=False)
    with pytest.raises(Conflict):
        notifications.send_test(owner, channel, NOW)


# ---- email -------------------------------------------------------------------------------------


def email_channel(owner, address="ops@example.org"):
    channel, secret = channels.create_channel(owner, name="ops mail", kind="email", address=address)
    db.session.commit()
    assert secret is None
    return channel


def test_an_email_goes_through_the_smtp_server(app, owner, smtp):
    channel = email_channel(owner)
    (delivery_id,) = queue([channel.id])
    assert notifications.deliver_due(NOW).delivered == 1
    ((sender, recipients, message),) = smtp.messages
    assert (sender, recipients) == ("portal@example.org", ["ops@example.org"])
    assert message["Subject"] == "[Portal] Alert raised: Boiler too hot on boiler"
    assert message["X-Portal-Delivery"] == str(delivery_id)
    (attached,) = list(message.iter_attachments())
    assert json.loads(attached.get_content()) == delivery(delivery_id).body
    assert "Boiler too hot" in message.get_body(("plain",)).get_content()
    (attempt,) = attempts_of(delivery_id)
    assert (attempt.ok, attempt.status_code) == (True, 250)


def test_an_email_the_server_refuses_is_retried_with_its_answer_recorded(app, owner, smtp):
    channel = email_channel(owner)
    (delivery_id,) = queue([channel.id])
    smtp.mode = "reject"
    assert notifications.deliver_due(NOW).retrying == 1
    (attempt,) = attempts_of(delivery_id)
    assert attempt.status_code == 550 and "No thanks" in attempt.error
    smtp.mode = "ok"
    notifications.deliver_due(delivery(delivery_id).next_attempt_at)
    assert delivery(delivery_id).status is DeliveryStatus.delivered
    assert len(smtp.messages) == 1


def test_email_without_an_smtp_server_fails_each_attempt_saying_so(app, owner):
    channel = email_channel(owner)
    (delivery_id,) = queue([channel.id])
    notifications.deliver_due(NOW)
    assert "PORTAL_SMTP_HOST" in attempts_of(delivery_id)[0].error
    assert delivery(delivery_id).status is DeliveryStatus.pending


def test_an_unreachable_smtp_server_is_an_error_and_a_retry(app, owner, smtp):
    channel = email_channel(owner)
    (delivery_id,) = queue([channel.id])
    smtp.stop()
    notifications.deliver_due(NOW)
    (attempt,) = attempts_of(delivery_id)
    assert attempt.ok is False and "refused" in attempt.error.lower()


def test_the_flask_command_runs_one_delivery_pass(app, owner, receiver, runner):
    channel, _ = webhook(owner, receiver.url)
    queue([channel.id], now=utcnow() - timedelta(seconds=1))
    result = runner.invoke(args=["notifications", "deliver"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "delivered 1, retrying 0, given up 0, postponed 0"
    assert len(receiver.requests) == 1
