"""Schedules: when a command is sent to a device, and the scheduler's record of its passes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Model
from portal.models.devices import Device
from portal.models.enums import ScheduleKind, enum_column
from portal.models.types import JSONType, UTCDateTime, utcnow


class Schedule(Model):
    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    kind: Mapped[ScheduleKind] = mapped_column(enum_column(ScheduleKind))
    cron: Mapped[str | None] = mapped_column(String(120))
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The sun kind: its event (sunrise, sunset, dawn, dusk), minutes after it, and the place.
    sun_event: Mapped[str | None] = mapped_column(String(16))
    sun_offset_minutes: Mapped[int | None] = mapped_column(Integer)
    sun_latitude: Mapped[float | None] = mapped_column()
    sun_longitude: Mapped[float | None] = mapped_column()
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    enabled: Mapped[bool] = mapped_column(default=True)
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    misfire_grace_seconds: Mapped[int] = mapped_column(default=300)
    command_ttl_seconds: Mapped[int] = mapped_column(default=3600)
    # The next due time (None: disabled or finished); a pass selects on it, hence the index.
    next_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    last_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    fire_count: Mapped[int] = mapped_column(default=0)
    skipped_count: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    device: Mapped[Device] = relationship()

    def __str__(self) -> str:
        return self.name


class SchedulerPass(Model):
    """One pass of ``flask scheduler tick``: when, what it did, how late it was."""

    __tablename__ = "scheduler_passes"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    fired: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    expired: Mapped[int] = mapped_column(default=0)
    # Rows the retention purge removed in this pass (readings, commands and audit entries).
    purged: Mapped[int] = mapped_column(default=0, server_default="0")
    lag_seconds: Mapped[float] = mapped_column(default=0.0)
    host: Mapped[str] = mapped_column(String(200), default="")
