"""Rules and alerts: what the portal watches for, and what it noticed.

A rule (``threshold``, ``silence``, ``command_failed``) raises at most one open alert per device
at a time; the alert stays open (``active``, then perhaps ``acknowledged``) until its condition
clears (``resolved``). The rule keeps the little state a threshold needs between readings.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Model
from portal.models.commands import Command
from portal.models.devices import Device
from portal.models.enums import enum_column
from portal.models.types import JSONType, UTCDateTime, utcnow
from portal.models.users import User


class RuleKind(enum.StrEnum):
    threshold = "threshold"
    silence = "silence"
    command_failed = "command_failed"


class Severity(enum.StrEnum):
    info = "info"
    warning = "warning"
    critical = "critical"


class AlertState(enum.StrEnum):
    active = "active"
    acknowledged = "acknowledged"
    resolved = "resolved"


class Rule(Model):
    __tablename__ = "rules"
    __table_args__ = (
        UniqueConstraint("owner_id", "name"),
        # Ingest's question: the enabled threshold rules on these devices and metrics.
        Index("ix_rules_device_metric", "device_id", "metric"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Whose reach the rule acts in: its commands go only to devices its owner may change.
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[RuleKind] = mapped_column(enum_column(RuleKind))
    # None only for a command_failed rule that watches every device in its owner's reach.
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    enabled: Mapped[bool] = mapped_column(default=True)
    severity: Mapped[Severity] = mapped_column(enum_column(Severity), default=Severity.warning)
    # threshold
    metric: Mapped[str | None] = mapped_column(String(64))
    op: Mapped[str | None] = mapped_column(String(2))
    value: Mapped[float | None]
    for_seconds: Mapped[int] = mapped_column(default=0)
    clear_value: Mapped[float | None]
    # silence
    seconds: Mapped[int | None]
    # {"action", "payload", "device_id"} or None; the channel ids to notify.
    on_raise: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    on_clear: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    notify: Mapped[list[int]] = mapped_column(JSONType, default=list)
    # A threshold's memory between readings (reading times, not arrival times): since when the
    # condition has held without an alert yet, the value that began it, and the time of the
    # last change of state (an older reading arriving late changes nothing).
    pending_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    pending_value: Mapped[float | None]
    judged_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    owner: Mapped[User] = relationship()
    device: Mapped[Device | None] = relationship()

    def __str__(self) -> str:
        return self.name


class Alert(Model):
    __tablename__ = "alerts"
    __table_args__ = (
        # One open alert per rule and device: the database holds the promise.
        Index(
            "uq_alerts_open",
            "rule_id",
            "device_id",
            unique=True,
            sqlite_where=text("state != 'resolved'"),
            postgresql_where=text("state != 'resolved'"),
        ),
        # The lists: by state, newest first; a device's alerts.
        Index("ix_alerts_state_id", "state", "id"),
        Index("ix_alerts_device_id", "device_id", "id"),
        # A command's alerts (its admin page), and the SET NULL when retention deletes it:
        # without these every deleted command reads the whole alerts table.
        Index("ix_alerts_raise_command_id", "raise_command_id"),
        Index("ix_alerts_clear_command_id", "clear_command_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("rules.id", ondelete="CASCADE"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    state: Mapped[AlertState] = mapped_column(enum_column(AlertState), default=AlertState.active)
    severity: Mapped[Severity] = mapped_column(enum_column(Severity))
    # The reading that raised it (threshold), the seconds of silence (silence), the command's
    # id (command_failed).
    value: Mapped[float | None]
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The commands the rule's on_raise / on_clear queued for it.
    raise_command_id: Mapped[int | None] = mapped_column(
        ForeignKey("commands.id", ondelete="SET NULL")
    )
    clear_command_id: Mapped[int | None] = mapped_column(
        ForeignKey("commands.id", ondelete="SET NULL")
    )

    rule: Mapped[Rule] = relationship()
    device: Mapped[Device] = relationship()
    acknowledged_by: Mapped[User | None] = relationship()
    raise_command: Mapped[Command | None] = relationship(foreign_keys=[raise_command_id])
    clear_command: Mapped[Command | None] = relationship(foreign_keys=[clear_command_id])

    def __str__(self) -> str:
        return f"alert {self.id}"
