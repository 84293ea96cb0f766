"""Login sessions kept on the server: the browser's cookie names one, and only a live row opens
anything, so a logout, a password change or a revocation ends it at once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Model
from portal.models.types import UTCDateTime, utcnow
from portal.models.users import User


class UserSession(Model):
    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    # SHA-256 of the random key the cookie carries: a copy of the table opens no session.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Why it ended: logout, password_changed, password_reset, deactivated, role_changed,
    # logout_everywhere, second_factor_reset.
    end_reason: Mapped[str | None] = mapped_column(String(32))
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(200), default="")

    user: Mapped[User] = relationship()

    def __str__(self) -> str:
        return f"session {self.id} of {self.user_id}"
