"""The tables, one module per family; importing this package registers them all."""

from portal.models.audit import AuditEvent, IdempotencyRecord
from portal.models.commands import Command
from portal.models.devices import Device
from portal.models.enums import CommandSource, CommandStatus, Role, ScheduleKind
from portal.models.readings import Reading
from portal.models.schedules import Schedule, SchedulerPass
from portal.models.types import utcnow
from portal.models.users import PersonalToken, User

__all__ = [
    "AuditEvent",
    "Command",
    "CommandSource",
    "CommandStatus",
    "Device",
    "IdempotencyRecord",
    "PersonalToken",
    "Reading",
    "Role",
    "Schedule",
    "ScheduleKind",
    "SchedulerPass",
    "User",
    "utcnow",
]
