"""Figures for the dashboard at ``/admin/``, scoped to what the user may see."""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Command, CommandStatus, Device, Schedule, User, utcnow
from portal.services import access


def _count(query) -> int:
    return db.session.scalar(select(func.count()).select_from(query.subquery())) or 0


def dashboard_context(user: User) -> dict:
    now = utcnow()
    online_after = now - timedelta(seconds=current_app.config["DEVICE_ONLINE_SECONDS"])
    devices = access.device_query_for(user)
    commands = access.scope(select(Command.id), user, Command.device_id)
    schedules = access.scope(select(Schedule.id), user, Schedule.device_id)
    cards = [
        {"key": "devices", "label": "Devices", "value": _count(devices), "tone": "light"},
        {"key": "online", "label": "Online", "tone": "success",
         "value": _count(devices.where(Device.last_seen_at >= online_after))},
        {"key": "queued", "label": "Commands queued", "tone": "info",
         "value": _count(commands.where(Command.status == CommandStatus.queued))},
        {"key": "schedules", "label": "Schedules due in 1 h", "tone": "light",
         "value": _count(schedules.where(Schedule.next_fire_at <= now + timedelta(hours=1)))},
    ]
    return {"cards": cards}
