"""Demo schedules for ``flask demo``: one of each kind, and one that fires every minute."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from portal.extensions import db
from portal.models import Device, Schedule
from portal.services.schedules import create_schedule


def demo_schedules(now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "name": "Morning lights",
            "device": "greenhouse-pi",
            "action": "relay.on",
            "payload": {"channel": 1},
            "cron": "0 7 * * *",
            "timezone": "Europe/Berlin",
        },
        {
            "name": "Lights on at sunset",
            "device": "greenhouse-pi",
            "action": "relay.on",
            "payload": {"channel": 2},
            "sun": {"event": "sunset", "offset_minutes": -30, "latitude": 52.52, "longitude": 13.4},
            "timezone": "Europe/Berlin",
        },
        # Every minute, so a fresh demo visibly fires within one.
        {
            "name": "Fan pulse",
            "device": "shed-esp32",
            "action": "relay.on",
            "payload": {"seconds": 10},
            "interval_seconds": 60,
        },
        {
            "name": "Pump weekdays",
            "device": "pond-pump",
            "action": "pump.run",
            "payload": {"minutes": 5},
            "cron": "*/30 6-20 * * 1-5",
            "timezone": "Europe/Berlin",
        },
        {
            "name": "Firmware check",
            "device": "weather-arduino",
            "action": "firmware.check",
            "run_at": now + timedelta(hours=1),
        },
    ]


def add_demo_schedules(now: datetime) -> int:
    """Create the demo schedules that are missing (matched by name); return how many."""
    added = 0
    for fields in demo_schedules(now):
        device = db.session.execute(
            select(Device).where(Device.name == fields.pop("device"))
        ).scalar_one_or_none()
        exists = db.session.execute(
            select(Schedule.id).where(Schedule.name == fields["name"])
        ).first()
        if device is None or exists:
            continue
        create_schedule(None, device=device, now=now, **fields)
        added += 1
    return added
