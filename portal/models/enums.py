"""Enumerations whose values are the contract's strings."""

import enum

import sqlalchemy as sa


class Role(enum.StrEnum):
    admin = "admin"
    operator = "operator"
    viewer = "viewer"


class TokenScope(enum.StrEnum):
    full = "full"
    read = "read"


class CommandStatus(enum.StrEnum):
    queued = "queued"
    delivered = "delivered"
    succeeded = "succeeded"
    failed = "failed"
    expired = "expired"
    cancelled = "cancelled"

    @property
    def is_open(self) -> bool:
        return self in (CommandStatus.queued, CommandStatus.delivered)


class CommandSource(enum.StrEnum):
    person = "person"
    schedule = "schedule"
    rule = "rule"


class ScheduleKind(enum.StrEnum):
    cron = "cron"
    interval = "interval"
    once = "once"
    sun = "sun"


def enum_column(enum_cls: type[enum.Enum], length: int = 16) -> sa.Enum:
    """Store an enum by value as a short string (no native PostgreSQL type to migrate)."""
    return sa.Enum(
        enum_cls,
        native_enum=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )
