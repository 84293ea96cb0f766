"""Commands sent to devices, by a person or a schedule."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Model
from portal.models.devices import Device
from portal.models.enums import CommandSource, CommandStatus, enum_column
from portal.models.schedules import Schedule
from portal.models.types import JSONType, UTCDateTime, utcnow
from portal.models.users import User


class Command(Model):
    __tablename__ = "commands"
    __table_args__ = (
        # A schedule fires at most once per due time, however many schedulers run.
        UniqueConstraint("schedule_id", "due_at"),
        # A device's poll: its open commands, oldest first.
        Index("ix_commands_device_status_id", "device_id", "status", "id"),
        Index("ix_commands_status_expires_at", "status", "expires_at"),
        # The admin's list filtered by device, newest first by id.
        Index("ix_commands_device_id", "device_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[CommandStatus] = mapped_column(
        enum_column(CommandStatus), default=CommandStatus.queued
    )
    source: Mapped[CommandSource] = mapped_column(
        enum_column(CommandSource), default=CommandSource.person
    )
    # No index of its own: the unique (schedule_id, due_at) above leads with it.
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedules.id", ondelete="SET NULL"))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(default=0)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    reason: Mapped[str | None] = mapped_column(String(64))

    device: Mapped[Device] = relationship()
    schedule: Mapped[Schedule | None] = relationship()
    created_by: Mapped[User | None] = relationship()

    def __str__(self) -> str:
        return f"#{self.id} {self.action}"
