"""The notification outbox: ``notify`` queues an event for channels in the caller's transaction,
``deliver_due`` sends what is due and records every attempt.

The event (the body of each delivery, the same for every channel and every retry)::

    {
      "id": "4f9c0e7ab1d24c5e9d0b6c2a7e1f3b58",  # the event's id: receivers de-duplicate on it
      "event": "alert.raised",                  # or "alert.resolved", "notification.test"
      "at": "2026-12-05T10:00:00Z",             # when it happened, RFC 3339 in UTC
      "alert": {"id": 12, "rule_id": 3, "device_id": 7, "state": "active",
                "severity": "critical", "value": 81.5, "raised_at": "…",
                "acknowledged_at": null, "resolved_at": null},
      "rule": {"id": 3, "name": "Boiler too hot", "kind": "threshold", "severity": "critical"},
      "device": {"id": 7, "name": "boiler"}
    }

A webhook receives it as a JSON POST signed in ``X-Portal-Signature: sha256=<hex HMAC-SHA256
of the body with the channel's secret>`` (also ``X-Portal-Event`` and ``X-Portal-Delivery``,
the delivery's id); an email carries a summary and the event as ``event.json``.

Each delivery (one per channel and event) moves through::

    pending --2xx, or the SMTP server took it-------------------> delivered
    pending --anything else, within 24 h of created_at----------> pending (next_attempt_at later)
    pending --anything else, at or after created_at + 24 h------> failed (given up)

After the n-th failed attempt the next waits 10 s * 3^(n-1), at most an hour, less up to 20 %
(jitter, so retries to one receiver spread out): 10 s, 30 s, 1.5 min, 4.5 min, 13.5 min,
40.5 min, then hourly; the last one falls on created_at + 24 h. Delivery is at least once: a
receiver may see an event twice (same ``id``), never lose one the outbox holds.

A pass claims due rows with a conditional UPDATE that moves ``next_attempt_at`` past the send's
end (``CLAIM_SECONDS``), commits, sends with no transaction open, then records each outcome. So
concurrent passes never send a row twice at once, and a pass that dies mid-send leaves its rows
due again after the claim runs out. Sending is bounded in time (``senders``).
"""

from __future__ import annotations

import enum
import json
import logging
import math
import random
import time
import typing
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson
from flask import current_app
from sqlalchemy import CursorResult, Select, insert, select, update

from portal.extensions import db
from portal.models import (
    ChannelKind,
    DeliveryStatus,
    NotificationAttempt,
    NotificationChannel,
    NotificationDelivery,
    User,
    utcnow,
)
from portal.services import senders
from portal.services.channels import (
    SecretUnreadable,
    channel_secret,
    check_channel_change,
    visible_channel_ids,
)
from portal.services.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)

ALERT_RAISED = "alert.raised"
ALERT_RESOLVED = "alert.resolved"
TEST = "notification.test"
EVENTS = (ALERT_RAISED, ALERT_RESOLVED, TEST)
RETRY_WINDOW = timedelta(hours=24)
BACKOFF_FIRST_SECONDS = 10.0
BACKOFF_FACTOR = 3.0
BACKOFF_MAX_SECONDS = 3600.0
JITTER = 0.2
BATCH_SIZE = 50
# How long a pass may spend sending: a send begins only if it can end (SEND_TIMEOUT) in time.
PASS_BUDGET_SECONDS = 8.0
# A claimed row is due again this long after the claim, should its pass die while sending.
CLAIM_SECONDS = 120

_deliveries = NotificationDelivery.__table__
_channels = NotificationChannel.__table__
_attempts = NotificationAttempt.__table__


# ---- the event -------------------------------------------------------------------------------


def rfc3339(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """``value`` as JSON keeps it on every database; InvalidInput (field ``event``) otherwise."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, dict):
        return {_plain(str(key)): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(fields={"event": "Numbers must be finite."})
    if isinstance(value, str) and "\x00" in value:
        raise InvalidInput(fields={"event": "Text must not contain NUL characters."})
    if value is None or isinstance(value, str | int | float):
        return value
    raise InvalidInput(fields={"event": f"Cannot be sent as JSON: {type(value).__name__}."})


def event_body(event: str, *, at: datetime | None = None, **parts: Any) -> dict[str, Any]:
    """An event as ``notify`` takes it: ``event`` (one of EVENTS), a new ``id``, ``at``
    (default now) and the ``parts`` (``alert``, ``rule``, ``device``: dicts of plain values;
    instants become RFC 3339 strings, enums their values)."""
    body: dict[str, Any] = _plain(
        {"id": uuid.uuid4().hex, "event": event, "at": at or utcnow(), **parts}
    )
    return body


def notify(
    channel_ids: Iterable[int], event: dict[str, Any], now: datetime | None = None
) -> list[NotificationDelivery]:
    """Queue ``event`` for each channel: one pending delivery each, due at once, in the
    caller's transaction (the caller commits; nothing is sent here).

    ``event`` is a body as ``event_body`` makes it (an ``id`` and ``at`` are added when
    missing). Channels that no longer exist, or are disabled, are skipped. Raises InvalidInput
    for an event name not in EVENTS or a body JSON cannot hold.
    """
    now = now or utcnow()
    body = _plain(event) if isinstance(event, dict) else None
    if body is None or body.get("event") not in EVENTS:
        raise InvalidInput(fields={"event": f"One of {', '.join(EVENTS)}."})
    body.setdefault("id", uuid.uuid4().hex)
    body.setdefault("at", rfc3339(now))
    ids = list(dict.fromkeys(channel_ids))
    if not ids:
        return []
    channels = db.session.execute(
        select(NotificationChannel.id).where(
            NotificationChannel.id.in_(ids), NotificationChannel.enabled.is_(True)
        )
    ).scalars()
    deliveries = [
        NotificationDelivery(
            channel_id=channel_id,
            event=body["event"],
            body=body,
            status=DeliveryStatus.pending,
            created_at=now,
            next_attempt_at=now,
        )
        for channel_id in sorted(channels)
    ]
    db.session.add_all(deliveries)
    db.session.flush()
    return deliveries


def send_test(
    actor: User | None, channel: NotificationChannel, now: datetime | None = None
) -> NotificationDelivery:
    """Queue a ``notification.test`` event for the channel (the next pass sends it).

    Raises Forbidden/NotFound when the actor may not use the channel, Conflict when it is
    disabled.
    """
    if actor is not None:
        check_channel_change(actor, channel)
    if not channel.enabled:
        raise Conflict("The channel is disabled; enable it first.", code="channel_disabled")
    body = event_body(
        TEST,
        at=now,
        channel={"id": channel.id, "name": channel.name},
        message="A test notification from the portal.",
    )
    (delivery,) = notify([channel.id], body, now)
    return delivery


# ---- who sees which deliveries ---------------------------------------------------------------


def delivery_query_for(user: User) -> Select[NotificationDelivery]:
    """Deliveries to the channels the user may see."""
    query = select(NotificationDelivery)
    channel_ids = visible_channel_ids(user)
    if channel_ids is not None:
        query = query.where(NotificationDelivery.channel_id.in_(channel_ids))
    return query


def get_delivery_for(user: User, delivery_id: int) -> NotificationDelivery:
    """The delivery if its channel is in the user's reach; raises NotFound otherwise."""
    delivery = db.session.execute(
        delivery_query_for(user).where(NotificationDelivery.id == delivery_id)
    ).scalar_one_or_none()
    if delivery is None:
        raise NotFound("No such delivery.")
    return delivery


# ---- retries ---------------------------------------------------------------------------------


def backoff_seconds(failures: int, rand: float) -> float:
    """Seconds to wait after ``failures`` failed attempts in a row (1, 2, ...): 10, 30, 90, ...
    at most 3600, less up to ``JITTER`` of it (``rand`` in [0, 1) picks how much)."""
    exponent = min(max(failures, 1) - 1, 16)
    base = min(BACKOFF_FIRST_SECONDS * BACKOFF_FACTOR**exponent, BACKOFF_MAX_SECONDS)
    return base * (1 - JITTER * rand)


def next_attempt_at(
    created_at: datetime, failed_at: datetime, failures: int, rand: float | None = None
) -> datetime | None:
    """When to try again after a failed attempt at ``failed_at``; None to give up, once the
    retry window (24 h from ``created_at``) is over. The last try falls on its end."""
    end = created_at + RETRY_WINDOW
    if failed_at >= end:
        return None
    wait = backoff_seconds(failures, random.random() if rand is None else rand)
    return min(failed_at + timedelta(seconds=wait), end)


# ---- a pass ----------------------------------------------------------------------------------


class PassResult(NamedTuple):
    delivered: int = 0
    retrying: int = 0
    given_up: int = 0
    postponed: int = 0  # claimed but not begun within the pass's time budget: due again


def deliver_due(
    now: datetime | None = None,
    *,
    limit: int | None = None,
    budget_seconds: float | None = None,
) -> PassResult:
    """Send up to ``limit`` (default ``BATCH_SIZE``) deliveries due at ``now``, side by side,
    and record each attempt.

    Returns within about ``budget_seconds`` (default ``PASS_BUDGET_SECONDS``) whatever the
    receivers do. Commits its own work (like the scheduler pass, it is an edge): call it with
    nothing else in the session. Raises OperationalError/InterfaceError when the database is
    unreachable.
    """
    now = now or utcnow()
    limit = BATCH_SIZE if limit is None else limit
    budget_seconds = PASS_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    started = time.monotonic()
    rows = _claim(now, limit)
    if not rows:
        return PassResult()
    jobs = [_job(row) for row in rows]
    outcomes = senders.send_all(jobs, smtp_settings(), deadline=started + budget_seconds)
    result = _record(rows, outcomes, now, started)
    db.session.commit()
    return result


def smtp_settings() -> senders.SmtpSettings:
    config = current_app.config
    return senders.SmtpSettings(
        host=config["SMTP_HOST"],
        port=config["SMTP_PORT"],
        username=config["SMTP_USERNAME"],
        password=config["SMTP_PASSWORD"],
        from_address=config["SMTP_FROM"],
        starttls=config["SMTP_STARTTLS"],
    )


def _claim(now: datetime, limit: int) -> list[Any]:
    """Take the due deliveries (still pending, still due: another pass may have taken some)
    and commit, so that no transaction stays open while sending."""
    due = (
        select(_deliveries.c.id)
        .where(
            _deliveries.c.status == DeliveryStatus.pending.value,
            _deliveries.c.next_attempt_at <= now,
        )
        .order_by(_deliveries.c.next_attempt_at, _deliveries.c.id)
        .limit(limit)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        # Rows another pass is claiming are left to it rather than waited for.
        due = due.with_for_update(skip_locked=True)
    ids = list(db.session.execute(due).scalars())
    claimed: list[int] = []
    if ids:
        claimed = list(
            db.session.execute(
                update(_deliveries)
                .where(
                    _deliveries.c.id.in_(ids),
                    _deliveries.c.status == DeliveryStatus.pending.value,
                    _deliveries.c.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
                .returning(_deliveries.c.id)
            ).scalars()
        )
    rows: list[Any] = []
    if claimed:
        rows = list(
            db.session.execute(
                select(
                    _deliveries.c.id,
                    _deliveries.c.event,
                    _deliveries.c.body,
                    _deliveries.c.attempts,
                    _deliveries.c.created_at,
                    _channels.c.kind,
                    _channels.c.url,
                    _channels.c.address,
                    _channels.c.secret,
                    _channels.c.enabled,
                )
                .join(_channels, _channels.c.id == _deliveries.c.channel_id)
                .where(_deliveries.c.id.in_(claimed))
                .order_by(_deliveries.c.id)
            ).all()
        )
    db.session.commit()
    return rows


def _job(row: Any) -> senders.Job:
    body = orjson.dumps(row.body)
    if not row.enabled:
        return senders.Job(row.id, row.event, body, refused="The channel is disabled.")
    if row.kind == ChannelKind.webhook.value:
        try:
            secret = channel_secret(row.secret)
        except SecretUnreadable as exc:
            return senders.Job(row.id, row.event, body, refused=str(exc))
        return senders.Job(row.id, row.event, body, url=row.url, secret=secret)
    summary = summarise(row.body)
    text = f"{summary}\n\n{json.dumps(row.body, indent=2, ensure_ascii=False)}\n"
    return senders.Job(
        row.id,
        row.event,
        body,
        address=row.address,
        subject=f"[Portal] {summary}"[:200],
        text=text,
    )


def summarise(body: dict[str, Any]) -> str:
    """One line about the event, for an email's subject: "Alert raised: <rule> on <device>"."""

    def name(part: str) -> str:
        value = body.get(part)
        if not isinstance(value, dict):
            return ""
        return str(value.get("name") or (f"{part} {value['id']}" if "id" in value else ""))

    event = body.get("event")
    if event == TEST:
        line = f"Test notification for channel {name('channel')}"
    else:
        line = "Alert raised" if event == ALERT_RAISED else "Alert resolved"
        if name("rule"):
            line += f": {name('rule')}"
        if name("device"):
            line += f" on {name('device')}"
    # Header-safe: no line breaks or other control characters.
    return "".join(ch if ch.isprintable() else " " for ch in line)


def _record(
    rows: list[Any], outcomes: list[senders.Outcome], now: datetime, started: float
) -> PassResult:
    delivered = retrying = given_up = postponed = 0
    for row, outcome in zip(rows, outcomes, strict=True):
        if not outcome.sent:
            _update(row.id, {"next_attempt_at": now})
            postponed += 1
            continue
        attempted_at = now + timedelta(seconds=max(0.0, outcome.started - started))
        ended_at = attempted_at + timedelta(milliseconds=outcome.duration_ms)
        values: dict[str, Any] = {
            "attempts": _deliveries.c.attempts + 1,
            "last_attempt_at": attempted_at,
            "last_status_code": outcome.status_code,
            "last_error": outcome.error[:500],
        }
        retry_at = None
        if not outcome.ok:
            retry_at = next_attempt_at(row.created_at, attempted_at, row.attempts + 1)
        if outcome.ok or retry_at is None:
            status = DeliveryStatus.delivered if outcome.ok else DeliveryStatus.failed
            values.update(status=status.value, next_attempt_at=None, finished_at=ended_at)
        else:
            values["next_attempt_at"] = retry_at
        if not _update(row.id, values):
            continue  # deleted with its channel meanwhile
        db.session.execute(
            insert(_attempts).values(
                delivery_id=row.id,
                attempted_at=attempted_at,
                duration_ms=outcome.duration_ms,
                ok=outcome.ok,
                status_code=outcome.status_code,
                error=outcome.error[:500],
            )
        )
        if outcome.ok:
            delivered += 1
        elif retry_at is None:
            given_up += 1
            log.warning("delivery %s: given up after %s attempts", row.id, row.attempts + 1)
        else:
            retrying += 1
    return PassResult(delivered, retrying, given_up, postponed)


def _update(delivery_id: int, values: dict[str, Any]) -> bool:
    result = db.session.execute(
        update(_deliveries)
        .where(
            _deliveries.c.id == delivery_id,
            _deliveries.c.status == DeliveryStatus.pending.value,
        )
        .values(**values)
    )
    return typing.cast(CursorResult[Any], result).rowcount == 1
