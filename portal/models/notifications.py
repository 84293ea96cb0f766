"""Notifications: the channels people are told through, and the outbox of deliveries to them.

A delivery is one event (an alert raised or resolved) for one channel, written in the same
transaction as the event; each try to send it is a ``NotificationAttempt``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Model
from portal.models.enums import enum_column
from portal.models.types import JSONType, UTCDateTime, utcnow
from portal.models.users import User


class ChannelKind(enum.StrEnum):
    webhook = "webhook"
    email = "email"


class DeliveryStatus(enum.StrEnum):
    pending = "pending"  # waiting for its next attempt (or being sent right now)
    delivered = "delivered"
    failed = "failed"  # given up: no success within the retry window


class NotificationChannel(Model):
    __tablename__ = "notification_channels"
    # A user's channels have distinct names (the unique index also serves "channels of owner").
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # A user's channels go with the user: they notify nobody else.
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[ChannelKind] = mapped_column(enum_column(ChannelKind))
    url: Mapped[str | None] = mapped_column(String(2000))  # webhook
    address: Mapped[str | None] = mapped_column(String(254))  # email
    # The webhook's signing secret, encrypted (services/secret_box.py): the portal signs with it.
    secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    secret_prefix: Mapped[str] = mapped_column(String(16), default="")
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    owner: Mapped[User] = relationship()

    @property
    def target(self) -> str:
        """Where it sends to: the webhook's URL or the email address."""
        return (self.url if self.kind is ChannelKind.webhook else self.address) or ""

    def __str__(self) -> str:
        return self.name


class NotificationDelivery(Model):
    """One event for one channel: pending until sent with success, or failed after 24 h."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        # A pass's question: which pending deliveries are due, earliest first.
        Index("ix_notification_deliveries_status_next", "status", "next_attempt_at"),
        # A channel's deliveries, newest first (the admin's list filtered by channel).
        Index("ix_notification_deliveries_channel_id", "channel_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("notification_channels.id", ondelete="CASCADE")
    )
    event: Mapped[str] = mapped_column(String(32))
    body: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[DeliveryStatus] = mapped_column(
        enum_column(DeliveryStatus), default=DeliveryStatus.pending
    )
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # When a pass may (next) send it; a pass that claims it moves this past the send's end, so
    # a process that dies while sending leaves it due again. None once finished.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None]
    last_error: Mapped[str] = mapped_column(String(500), default="")
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    channel: Mapped[NotificationChannel] = relationship()
    attempt_log: Mapped[list[NotificationAttempt]] = relationship(
        back_populates="delivery",
        order_by="NotificationAttempt.id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    def __str__(self) -> str:
        return f"#{self.id} {self.event}"


class NotificationAttempt(Model):
    """One try to send a delivery: when, how long, and what the other side said."""

    __tablename__ = "notification_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("notification_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_ms: Mapped[int] = mapped_column(default=0)
    ok: Mapped[bool] = mapped_column(default=False)
    # The HTTP status (webhook) or the SMTP reply code (email), when the other side answered.
    status_code: Mapped[int | None]
    error: Mapped[str] = mapped_column(String(500), default="")

    delivery: Mapped[NotificationDelivery] = relationship(back_populates="attempt_log")

    def __str__(self) -> str:
        return f"attempt {self.id} of delivery {self.delivery_id}"
