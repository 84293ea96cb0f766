"""The tables, one module per family; importing this package registers them all."""

from portal.models.audit import AuditEvent, IdempotencyRecord
from portal.models.commands import Command
from portal.models.devices import Device
from portal.models.enums import CommandSource, CommandStatus, Role, ScheduleKind, TokenScope
from portal.models.mqtt import BridgeBeat, MqttCredentialChange
from portal.models.notifications import (
    ChannelKind,
    DeliveryStatus,
    NotificationAttempt,
    NotificationChannel,
    NotificationDelivery,
)
from portal.models.readings import MetricUnit, Reading
from portal.models.rollups import DailyRollup, HourlyRollup
from portal.models.rules import Alert, AlertState, Rule, RuleKind, Severity
from portal.models.schedules import Schedule, SchedulerPass
from portal.models.sessions import UserSession
from portal.models.types import utcnow
from portal.models.users import PersonalToken, RecoveryCode, User

__all__ = [
    "Alert",
    "AlertState",
    "AuditEvent",
    "BridgeBeat",
    "ChannelKind",
    "Command",
    "CommandSource",
    "CommandStatus",
    "DailyRollup",
    "DeliveryStatus",
    "Device",
    "HourlyRollup",
    "IdempotencyRecord",
    "MqttCredentialChange",
    "NotificationAttempt",
    "NotificationChannel",
    "NotificationDelivery",
    "PersonalToken",
    "MetricUnit",
    "Reading",
    "RecoveryCode",
    "Rule",
    "RuleKind",
    "Role",
    "Schedule",
    "ScheduleKind",
    "SchedulerPass",
    "Severity",
    "TokenScope",
    "User",
    "UserSession",
    "utcnow",
]
