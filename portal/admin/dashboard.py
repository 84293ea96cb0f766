"""The dashboard at ``/admin/``: the fleet at a glance, scoped to what the user may see."""

from __future__ import annotations

from flask import current_app

from portal.models import User, utcnow
from portal.services import fleet


def dashboard_context(user: User) -> dict:
    now = utcnow()
    due_count, due = fleet.schedules_due_soon(user, now)
    return {
        "devices": fleet.device_counts(user, now, current_app.config["DEVICE_ONLINE_SECONDS"]),
        "commands": fleet.command_counts(user, now),
        "attention": fleet.commands_needing_attention(user, now),
        "due_count": due_count,
        "due": due,
        "scheduler": fleet.scheduler_health(now),
        "mqtt": fleet.bridge_health(now),
        "bridge_quiet_seconds": fleet.BRIDGE_QUIET_SECONDS,
        "online_minutes": current_app.config["DEVICE_ONLINE_SECONDS"] // 60,
    }
