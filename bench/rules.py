"""Ingest with threshold rules: the upload of 100 with no rule enabled and with all enabled.

AUTOMATION.md: threshold rules are judged where readings are stored and "may cost ingest at
most 10 % of its throughput" (BUDGETS.md: ≥ 0.9× the same ingest with no rules). The rules are
seeded once (``seed.seed_rules``, disabled) and switched on and off with one UPDATE between
segments of the same upload scenario on the same server and database. The two sides alternate
(off, on, on, off, …) so that the machine's drift and the growing readings table weigh on both
alike; each side's figures are the sum of its segments.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench import scenarios as sc
from bench.seed import Database, seed_rules
from bench.server import Gunicorn

BATCH = 100
# The summed figures of a side; latency: median of the segments' p50, worst of the rest.
_SUMMED = ("requests", "ok", "non2xx", "bytes", "accepted", "stored", "completed_requests")


@dataclass(frozen=True)
class RulesPlan:
    count: int = 1_000  # enabled threshold rules (0: leave the scenario out)
    rounds: int = 2  # each round is one segment without rules and one with them


def set_rules_enabled(database: Database, enabled: bool) -> None:
    sc.query(database, "UPDATE rules SET enabled = ?", (enabled,))


def run(
    server: Gunicorn,
    database: Database,
    tokens_file: Path,
    timing: sc.Timing,
    plan: RulesPlan,
    devices: int,
    now: datetime,
    instance_dir: Path,
) -> tuple[dict, dict]:
    """Seed the rules, then measure: the figures without and with them (the latter also
    says how many rules, on how many devices, what judging did, and the scenario's time)."""
    started = time.perf_counter()
    seeded = seed_rules(database, plan.count, devices, now, instance_dir)
    without, with_rules = ingest_with_rules(server, database, tokens_file, timing, plan.rounds)
    with_rules.update(
        rules=seeded.count,
        rule_devices=seeded.devices,
        rules_seed_seconds=seeded.seconds,
        scenario_seconds=time.perf_counter() - started,
    )
    return without, with_rules


def ingest_with_rules(
    server: Gunicorn, database: Database, tokens_file: Path, timing: sc.Timing, rounds: int
) -> tuple[dict, dict]:
    """Figures of the upload of 100 with no rule enabled and with every seeded rule enabled."""
    segments: dict[bool, list[dict]] = {False: [], True: []}
    try:
        for round_number in range(rounds):
            order = (False, True) if round_number % 2 == 0 else (True, False)
            for enabled in order:
                set_rules_enabled(database, enabled)
                segments[enabled].append(
                    sc.upload_scenario(server, database, tokens_file, BATCH, timing)
                )
    finally:
        # The scenarios after this one (and the scheduler tick) run as without rules.
        set_rules_enabled(database, False)
    without, with_rules = merge(segments[False]), merge(segments[True])
    with_rules["outcome"] = outcome(database)
    return without, with_rules


def merge(segments: list[dict]) -> dict:
    """One scenario's figures from several runs of it."""
    merged = {key: sum(s[key] for s in segments) for key in _SUMMED}
    seconds = sum(s["seconds"] for s in segments)
    requests = max(merged["requests"], 1)
    merged.update(
        seconds=round(seconds, 3),
        rps=merged["requests"] / seconds if seconds else 0.0,
        rows_per_s=merged["accepted"] / seconds if seconds else 0.0,
        batch=BATCH,
        connections=segments[0]["connections"],
        stored_ok=all(s["stored_ok"] for s in segments),
        sample_bad=next((s["sample_bad"] for s in segments if s["sample_bad"]), None),
        errors={k: sum(s["errors"][k] for s in segments) for k in segments[0]["errors"]},
        cpu_ms_per_req=sum(s["cpu_ms_per_req"] * s["requests"] for s in segments) / requests,
        latency_us={
            key: (
                statistics.median(s["latency_us"][key] for s in segments)
                if key == "p50"
                else max(s["latency_us"][key] for s in segments)
            )
            for key in segments[0]["latency_us"]
        },
        segments=[
            {"rows_per_s": s["rows_per_s"], "cpu_ms_per_req": s["cpu_ms_per_req"]} for s in segments
        ],
    )
    if all("db_cpu_ms_per_req" in s for s in segments):
        merged["db_cpu_ms_per_req"] = (
            sum(s["db_cpu_ms_per_req"] * s["requests"] for s in segments) / requests
        )
    return merged


def outcome(database: Database) -> dict:
    """What judging did: alerts raised and resolved, the rules' commands and notifications,
    rules waiting out a duration."""

    def scalar(sql: str) -> int:
        return int(sc.query(database, sql)[0][0])

    return {
        "alerts": scalar("SELECT count(*) FROM alerts"),
        "resolved": scalar("SELECT count(*) FROM alerts WHERE state = 'resolved'"),
        "rule_commands": scalar("SELECT count(*) FROM commands WHERE source = 'rule'"),
        "deliveries": scalar("SELECT count(*) FROM notification_deliveries"),
        "pending_rules": scalar("SELECT count(*) FROM rules WHERE pending_since IS NOT NULL"),
    }
