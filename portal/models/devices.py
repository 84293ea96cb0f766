"""Boards that send readings and take commands."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Model
from portal.models.types import UTCDateTime, utcnow
from portal.models.users import User


class Device(Model):
    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Devices outlive nothing by accident: a user who owns devices cannot be deleted.
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(32), default="generic")
    location: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(default=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_prefix: Mapped[str] = mapped_column(String(12))
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    firmware: Mapped[str | None] = mapped_column(String(64))
    # How the device has been heard from: over HTTP (its own token) and over MQTT (the bridge).
    http_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    mqtt_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What the device last said on its retained ``up/status`` topic (or its will): online/offline.
    mqtt_online: Mapped[bool] = mapped_column(default=False, server_default=false())
    # How long this device's readings are kept: None = the installation's default
    # (PORTAL_READINGS_RETENTION_DAYS), 0 = forever, N = days.
    readings_retention_days: Mapped[int | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    owner: Mapped[User] = relationship()

    def __str__(self) -> str:
        return self.name
