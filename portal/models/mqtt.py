"""What the MQTT bridge keeps: the broker credential changes still to make, and its heartbeat."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.models.base import Model
from portal.models.types import UTCDateTime, utcnow


class MqttCredentialChange(Model):
    """A device whose broker login must be brought in step with the portal.

    Written in the same transaction as the change (create, rotate, enable, disable, delete) and
    removed once the broker has it, so a change is never forgotten while the broker is away. No
    foreign key: the row must outlive a deleted device until the broker forgot that device too.
    ``secret`` is the new token, encrypted with a key derived from the secret key, until then.
    """

    __tablename__ = "mqtt_credential_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(index=True)
    secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str] = mapped_column(String(500), default="")


class BridgeBeat(Model):
    """One running ``flask mqtt run``: its last heartbeat and what it saw (for the dashboard)."""

    __tablename__ = "mqtt_bridge_beats"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(200), unique=True)
    host: Mapped[str] = mapped_column(String(200), default="")
    pid: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    connected: Mapped[bool] = mapped_column(default=False)
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Seconds from the broker handing a message over to its transaction committing (the
    # slowest of the last beat period), and how many messages it handled since it started.
    lag_seconds: Mapped[float] = mapped_column(default=0.0)
    handled: Mapped[int] = mapped_column(default=0)
