"""The benchmark's data set: sizes, and generators of table rows (no database here).

Rows are plain tuples in the column order of ``COLUMNS``; instants are produced by a ``ts``
function so that SQLite gets SQLAlchemy's own text format and PostgreSQL gets aware datetimes.
The same generators feed the portal's seed and the raw ``sqlite3`` baseline.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from portal.services.tokens import DEVICE_PREFIX, new_token

COLUMNS: dict[str, tuple[str, ...]] = {
    "devices": (
        "id",
        "owner_id",
        "name",
        "kind",
        "location",
        "description",
        "enabled",
        "token_hash",
        "token_prefix",
        "last_seen_at",
        "firmware",
        "created_at",
        "updated_at",
    ),
    "readings": ("device_id", "metric", "value", "recorded_at"),
    "commands": (
        "device_id",
        "action",
        "payload",
        "status",
        "source",
        "schedule_id",
        "due_at",
        "created_by_id",
        "created_at",
        "expires_at",
        "delivered_at",
        "lease_expires_at",
        "attempts",
        "finished_at",
        "result",
        "reason",
    ),
    "schedules": (
        "id",
        "name",
        "device_id",
        "action",
        "payload",
        "kind",
        "cron",
        "interval_seconds",
        "run_at",
        "timezone",
        "enabled",
        "start_at",
        "end_at",
        "misfire_grace_seconds",
        "command_ttl_seconds",
        "next_fire_at",
        "last_fire_at",
        "fire_count",
        "skipped_count",
        "created_at",
        "updated_at",
    ),
}
READINGS_SPAN = timedelta(days=7)
COMMANDS_SPAN = timedelta(days=30)
SCHEDULE_STEP_SECONDS = 300
KINDS = ("sensor", "relay", "gateway", "generic")
FINISHED = ("succeeded",) * 8 + ("failed", "expired")

Ts = Callable[[datetime], Any]


@dataclass(frozen=True)
class Sizes:
    devices: int = 10_000
    readings: int = 1_000_000
    schedules: int = 10_000
    commands: int = 100_000

    def scaled(self, factor: float) -> Sizes:
        return Sizes(
            *(
                max(2, int(round(v * factor)))
                for v in (self.devices, self.readings, self.schedules, self.commands)
            )
        )

    def small(self, rows: int = 1_000) -> Sizes:
        """The comparison data set: same devices, ``rows`` readings and commands."""
        return replace(
            self, readings=min(rows, self.readings), schedules=0, commands=min(rows, self.commands)
        )

    @property
    def readings_span(self) -> timedelta:
        """The readings' history: 7 days for up to 1,000,000, longer in proportion beyond (the
        same fleet at the same rate, months on: 10,000,000 readings span 70 days)."""
        return READINGS_SPAN * max(1.0, self.readings / 1_000_000)


def sqlite_ts(value: datetime) -> str:
    """SQLAlchemy's SQLite DATETIME text for a UTC instant (always with microseconds)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def pg_ts(value: datetime) -> datetime:
    return value


def device_tokens(count: int) -> list[tuple[str, str, str]]:
    """``count`` fresh device tokens as ``(clear, hash, prefix)``, via the portal's service."""
    return [new_token(DEVICE_PREFIX) for _ in range(count)]


def devices(
    sizes: Sizes, tokens: list[tuple[str, str, str]], owner_id: int, now: datetime, ts: Ts
) -> Iterator[tuple]:
    created = ts(now - timedelta(days=60))
    for i in range(1, sizes.devices + 1):
        _, digest, prefix = tokens[i - 1]
        seen = ts(now - timedelta(seconds=(i * 37) % 3600))
        yield (
            i,
            owner_id,
            f"bench-{i:05d}",
            KINDS[i % len(KINDS)],
            f"site-{i % 50}",
            "",
            True,
            digest,
            prefix,
            seen,
            "1.4.2",
            created,
            created,
        )


def readings(sizes: Sizes, now: datetime, ts: Ts) -> Iterator[tuple]:
    """Readings over ``sizes.readings_span`` in time order; every tenth belongs to device 1."""
    total = sizes.readings
    span = sizes.readings_span
    start = now - span
    step = span / max(total, 1)
    others = max(sizes.devices - 1, 1)
    for k in range(total):
        device_id = 1 if k % 10 == 0 else 2 + (k * 7919) % others
        metric = "temperature" if k % 2 else "humidity"
        yield (device_id, metric, 20.0 + (k % 97) / 10, ts(start + step * k))


def commands(sizes: Sizes, now: datetime, ts: Ts) -> Iterator[tuple]:
    """Finished commands (so queues are empty) over the last 30 days; a tenth for device 1."""
    total = sizes.commands
    start = now - COMMANDS_SPAN
    step = COMMANDS_SPAN / max(total, 1)
    payload = "{}"
    result = json.dumps({"ok": True})
    for k in range(total):
        created = start + step * k
        status = FINISHED[k % len(FINISHED)]
        delivered = None if status == "expired" else ts(created + timedelta(seconds=2))
        finished = created + timedelta(seconds=5 if status != "expired" else 3600)
        device_id = 1 if k % 10 == 0 else 1 + (k * 7919) % sizes.devices
        yield (
            device_id,
            "relay.on" if k % 2 else "relay.off",
            payload,
            status,
            "person",
            None,
            None,
            None,
            ts(created),
            ts(created + timedelta(hours=1)),
            delivered,
            None,
            0 if status == "expired" else 1,
            ts(finished),
            result if status == "succeeded" else None,
            "no_result" if status == "failed" else None,
        )


def due_time(now: datetime) -> datetime:
    """The latest 5-minute boundary at or before ``now``: both cron and interval are due then."""
    seconds = int(now.timestamp()) // SCHEDULE_STEP_SECONDS * SCHEDULE_STEP_SECONDS
    return datetime.fromtimestamp(seconds, UTC)


def schedules(sizes: Sizes, now: datetime, ts: Ts) -> Iterator[tuple]:
    """Schedules that are all due at ``due_time(now)``: half cron, half interval."""
    due = due_time(now)
    created = ts(due - timedelta(days=1))
    for i in range(1, sizes.schedules + 1):
        cron = i % 2 == 0
        yield (
            i,
            f"schedule-{i:05d}",
            1 + (i - 1) % sizes.devices,
            "relay.on",
            "{}",
            "cron" if cron else "interval",
            "*/5 * * * *" if cron else None,
            None if cron else SCHEDULE_STEP_SECONDS,
            None,
            "UTC",
            True,
            None,
            None,
            300,
            3600,
            ts(due),
            None,
            0,
            0,
            created,
            created,
        )


# ---- threshold rules (the ingest-with-rules scenario) --------------------------------------
# The metrics bench/lua/upload.lua sends (values 20.0 … 29.6) and two it never sends.
SENT_METRICS = ("temperature", "humidity")
OTHER_METRICS = ("pressure", "co2")
# One pattern per 20 rules, as a fleet's rules might look; each entry is
# (metric, op, value, for_seconds, clear_value, raises): what the bench's uploads make of it.
RULE_MIX: tuple[tuple[str, str, float, int, float | None, bool], ...] = (
    # 16 of 20 on the metrics sent, never holding: judged on every upload, silently.
    *(("temperature", ">", 35.0, 0, 33.0, False),) * 4,
    *(("temperature", "<", 5.0, 0, None, False),) * 3,
    *(("humidity", ">", 90.0, 0, 85.0, False),) * 3,
    *(("humidity", "<", 10.0, 0, None, False),) * 2,
    *(("temperature", ">", 32.0, 300, None, False),) * 3,
    # Holds on every reading, but for a day: pending from the first upload on, never raised.
    ("humidity", ">=", 20.0, 86_400, None, False),
    # 2 of 20 on metrics the bench never sends: found by nothing.
    ("pressure", ">", 1050.0, 0, None, False),
    ("co2", ">", 1500.0, 0, None, False),
    # Holds for the last few readings of a batch, then breaks: pending begins and ends.
    ("humidity", ">", 29.0, 30, 25.0, False),
    # 1 of 20 raises (29.1 … 29.5 in every batch) and clears (20.0): a command and a
    # notification each way, once per new batch of its device.
    ("temperature", ">", 29.0, 0, 25.0, True),
)


def rules(count: int, devices: int, owner_id: int, channel_id: int, now: datetime) -> list[dict]:
    """``count`` disabled threshold rules as ``rules`` table rows, spread over the devices
    (1,000 rules on 10,000 devices: one each, every tenth device)."""
    stride = 7919  # prime: consecutive rules land on devices far apart, all distinct if it can
    rows = []
    for i in range(count):
        metric, op, value, for_seconds, clear_value, raises = RULE_MIX[i % len(RULE_MIX)]
        rows.append(
            {
                "owner_id": owner_id,
                "name": f"bench-rule-{i:05d}",
                "kind": "threshold",
                "device_id": 1 + (i * stride) % devices,
                "enabled": False,
                "severity": "critical" if raises else "warning",
                "metric": metric,
                "op": op,
                "value": value,
                "for_seconds": for_seconds,
                "clear_value": clear_value,
                "seconds": None,
                "on_raise": {"action": "fan.on", "payload": {"speed": 2}, "device_id": None}
                if raises
                else None,
                "on_clear": {"action": "fan.off", "payload": {}, "device_id": None}
                if raises
                else None,
                "notify": [channel_id] if raises else [],
                "pending_since": None,
                "pending_value": None,
                "judged_until": None,
                "created_at": now,
                "updated_at": now,
            }
        )
    return rows
