"""The dashboard at ``/admin/``: the fleet at a glance, scoped to what the user may see."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import select

from portal.admin.alerts import alert_value, severity_badge, state_badge
from portal.extensions import db
from portal.models import Alert, Device, Rule, User, utcnow
from portal.services import access, alerts, fleet, retention


def open_alerts(user: User) -> tuple[list[Alert], set[int]]:
    """The open alerts the dashboard shows first, with their rules and devices loaded in two
    queries (not two per alert), and the ids of those the user may acknowledge."""
    found = alerts.open_alerts_for(user)
    if found:
        db.session.execute(select(Rule).where(Rule.id.in_({a.rule_id for a in found}))).all()
        db.session.execute(select(Device).where(Device.id.in_({a.device_id for a in found}))).all()
    may = {a.id for a in found if access.may_change_device(user, a.device)}
    return found, may


def dashboard_context(user: User) -> dict:
    now = utcnow()
    due_count, due = fleet.schedules_due_soon(user, now)
    open_list, may_acknowledge = open_alerts(user)
    return {
        "open_alerts": open_list,
        "open_alert_count": alerts.count_open(user) if open_list else 0,
        "may_acknowledge": may_acknowledge,
        "alert_state": state_badge,
        "alert_value": alert_value,
        "severity_badge": severity_badge,
        "devices": fleet.device_counts(user, now, current_app.config["DEVICE_ONLINE_SECONDS"]),
        "commands": fleet.command_counts(user, now),
        "attention": fleet.commands_needing_attention(user, now),
        "due_count": due_count,
        "due": due,
        "scheduler": fleet.scheduler_health(now),
        "mqtt": fleet.bridge_health(now),
        "bridge_quiet_seconds": fleet.BRIDGE_QUIET_SECONDS,
        "online_minutes": current_app.config["DEVICE_ONLINE_SECONDS"] // 60,
        # The installation's size, not one person's share: for admins only.
        "data": (
            retention.data_summary(retention.Policy.from_config(current_app.config))
            if user.is_admin
            else None
        ),
    }
