"""The audit log: who changed what, when and from where."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Model
from portal.models.types import JSONType, UTCDateTime, utcnow
from portal.models.users import User


class AuditEvent(Model):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    # Kept as text so the entry still says who it was after the user is deleted.
    actor_name: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(32))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(64))
    object_repr: Mapped[str] = mapped_column(String(200), default="")
    changes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    via: Mapped[str] = mapped_column(String(16), default="")
    remote_addr: Mapped[str] = mapped_column(String(64), default="")

    actor: Mapped[User | None] = relationship()

    def __str__(self) -> str:
        return f"{self.action} {self.object_type} {self.object_id}"


class IdempotencyRecord(Model):
    """The first answer to a request sent with an ``Idempotency-Key``, kept for 24 h."""

    __tablename__ = "idempotency_records"
    __table_args__ = (Index("ix_idempotency_records_caller_key", "caller", "key", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    caller: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int]
    response_body: Mapped[Any] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
