"""Retention: a day of a fleet's readings past their retention, purged while uploads run.

BUDGETS.md: upload p99 while a retention pass purges a day of a 1,000-device fleet's readings
(1.44 M rows, one a minute per device) stays within 2× its quiet figure, and the purge takes
no more than one scheduler interval. The day is loaded (by the driver, with the indexes in
place, as on a live portal) just past the default retention, so the seeded data set is not
touched. Then the same upload scenario runs on the same server, in segments quiet and while
``portal.services.retention.purge`` runs in this process in scheduler passes (each limited
to the pass's share of the interval, one straight after the other); the purge then finishes
the day unmeasured, so its time is the whole day's.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from bench import data
from bench import scenarios as sc
from bench.load import Load, run
from bench.seed import Database
from bench.server import Gunicorn

READINGS_RETENTION_DAYS = 90  # the portal's default, which the purge runs with
INTERVAL_SECONDS = 10  # the scheduler's default interval


@dataclass(frozen=True)
class RetentionPlan:
    devices: int = 1_000  # 0: leave the scenario out
    minutes: int = 1_440  # one reading per device and minute: a day
    batch: int = 1  # readings per upload request, as such a fleet sends them


def load_day(
    database: Database, plan: RetentionPlan, devices: int, now: datetime, instance: Path
) -> dict:
    """Insert the expired day: ``plan.minutes`` readings for each of the first devices,
    ending a day past the retention, on PostgreSQL into its week partitions (made first, as
    the scheduler pass made them when the day was today). Returns how many and how long it
    took."""
    fleet = min(plan.devices, devices)
    end = now - timedelta(days=READINGS_RETENTION_DAYS + 1)
    start = end - timedelta(minutes=plan.minutes)
    ts = data.sqlite_ts if database.kind == "sqlite" else data.pg_ts
    rows = (
        (
            1 + k % fleet,
            "temperature",
            20.0 + (k % 97) / 10,
            ts(start + timedelta(minutes=k // fleet)),
        )
        for k in range(fleet * plan.minutes)
    )
    started = time.perf_counter()
    if database.kind == "sqlite":
        import sqlite3

        with sqlite3.connect(database.url.removeprefix("sqlite:///")) as conn:
            conn.executemany(
                "INSERT INTO readings (device_id, metric, value, recorded_at) VALUES (?, ?, ?, ?)",
                rows,
            )
    else:
        import psycopg

        _make_partitions(database, instance, start, end)
        with psycopg.connect(sc.libpq_url(database), autocommit=True) as conn:
            with conn.cursor().copy(
                "COPY readings (device_id, metric, value, recorded_at) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
            conn.execute("ANALYZE readings")
    return {
        "rows": fleet * plan.minutes,
        "devices": fleet,
        "load_seconds": time.perf_counter() - started,
    }


def _make_partitions(database: Database, instance: Path, start: datetime, end: datetime) -> None:
    from portal import create_app
    from portal.extensions import db
    from portal.services import partitions

    app = create_app(
        {"DATABASE_URL": database.url, "SECRET_KEY": "bench", "INSTANCE_PATH": str(instance)}
    )
    with app.app_context():
        days = (end.date() - start.date()).days
        partitions.ensure_partitions(end, ahead=0, behind=days)
        db.session.remove()
        db.engine.dispose()


@dataclass
class _Purging:
    """The purge, in a thread: scheduler passes back to back while ``running`` is set, until
    nothing expired is left. ``idle`` is set between passes."""

    url: str
    instance: Path
    now: datetime
    passes: list[dict] = field(default_factory=list)
    error: str = ""
    budget: float = 0.0
    running: threading.Event = field(default_factory=threading.Event)
    idle: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        from portal import create_app
        from portal.extensions import db
        from portal.services import retention

        app = create_app(
            {"DATABASE_URL": self.url, "SECRET_KEY": "bench", "INSTANCE_PATH": str(self.instance)}
        )
        with app.app_context():
            policy = retention.Policy.from_config(app.config)
            self.budget = budget = INTERVAL_SECONDS * retention.PASS_SHARE
            try:
                while not self.finished.is_set():
                    self.idle.set()
                    self.running.wait()
                    self.idle.clear()
                    began = time.perf_counter()
                    purged = retention.purge(self.now, policy, budget_seconds=budget)
                    self.passes.append(
                        {"seconds": time.perf_counter() - began, "readings": purged.readings}
                    )
                    if purged.done:
                        self.finished.set()
            except Exception as exc:  # reported with the figures
                self.error = f"{exc.__class__.__name__}: {exc}"
                self.finished.set()
            finally:
                self.idle.set()
                db.session.remove()
                db.engine.dispose()

    def pause(self) -> None:
        """Let the pass in hand finish; no new one starts."""
        self.running.clear()
        self.idle.wait()


def run_scenario(
    server: Gunicorn,
    database: Database,
    tokens_file: Path,
    timing: sc.Timing,
    plan: RetentionPlan,
    devices: int,
    now: datetime,
    instance: Path,
) -> tuple[dict, dict]:
    """The upload figures quiet and during the purge; the latter also carries the purge's.

    The two sides alternate (quiet, purging, purging, quiet, …) in segments of half the
    scenario's time, so the machine's drift weighs on both alike; between segments the purge
    waits, its pass in hand finished. Each side's p99 is its worst segment's.
    """
    loaded = load_day(database, plan, devices, now, instance)
    load = Load(
        server.url + "/api/v1/device/readings",
        "upload.lua",
        (str(tokens_file), str(plan.batch), uuid.uuid4().hex[:12], str(int(time.time()))),
        connections=timing.connections,
        seconds=max(1.0, timing.seconds / 2),
    )
    if timing.warmup:
        run(Load(**{**load.__dict__, "seconds": timing.warmup}))
    measure = sc.Timing(**{**timing.__dict__, "warmup": 0})
    purging = _Purging(database.url, instance, now)
    thread = threading.Thread(target=purging.run, name="bench-purge", daemon=True)
    thread.start()
    purging.idle.wait()
    segments: dict[bool, list[dict]] = {False: [], True: []}
    for round_number in range(ROUNDS):
        for purge_on in (False, True) if round_number % 2 == 0 else (True, False):
            if purge_on and purging.finished.is_set():
                continue
            if purge_on:
                purging.running.set()
            segments[purge_on].append(sc.measured(server, load, measure, database))
            purging.pause()
    # The rest of the day, unmeasured, so the purge's time is the whole day's.
    purging.running.set()
    purging.finished.wait()
    thread.join()
    left = sc.query(
        database, "SELECT count(*) FROM readings WHERE recorded_at < ?", (_cutoff(database, now),)
    )[0][0]
    quiet, during = (_merged(segments[side], plan.batch) for side in (False, True))
    during["purge"] = {
        **loaded,
        "seconds": sum(p["seconds"] for p in purging.passes),
        "passes": len(purging.passes),
        "longest_pass_seconds": max((p["seconds"] for p in purging.passes), default=0.0),
        "purged": sum(p["readings"] for p in purging.passes),
        "left": left,
        "error": purging.error,
        "interval_seconds": INTERVAL_SECONDS,
        "pass_budget_seconds": purging.budget,
        "measured_segments": len(segments[True]),
    }
    return quiet, during


ROUNDS = 2
_SUMMED = ("requests", "ok", "non2xx", "bytes")


def _merged(segments: list[dict], batch: int) -> dict:
    """One side's figures from its segments: counts summed, p50 their median, the rest the
    worst segment's."""
    if not segments:
        return {"requests": 0, "non2xx": 0, "rps": 0.0, "latency_us": {"p50": 0, "p99": 0}}
    seconds = sum(s["seconds"] for s in segments)
    merged: dict = {key: sum(s[key] for s in segments) for key in _SUMMED}
    merged.update(
        seconds=round(seconds, 3),
        rps=merged["requests"] / seconds if seconds else 0.0,
        batch=batch,
        connections=segments[0]["connections"],
        sample_bad=next((s["sample_bad"] for s in segments if s.get("sample_bad")), None),
        errors={k: sum(s["errors"][k] for s in segments) for k in segments[0]["errors"]},
        cpu_ms_per_req=sum(s["cpu_ms_per_req"] * s["requests"] for s in segments)
        / max(merged["requests"], 1),
        latency_us={
            key: statistics.median(s["latency_us"][key] for s in segments)
            if key == "p50"
            else max(s["latency_us"][key] for s in segments)
            for key in segments[0]["latency_us"]
        },
        segments=[
            {"p99_ms": s["latency_us"]["p99"] / 1000, "rps": s["requests"] / s["seconds"]}
            for s in segments
        ],
    )
    return merged


def _cutoff(database: Database, now: datetime):
    cutoff = now - timedelta(days=READINGS_RETENTION_DAYS)
    return data.sqlite_ts(cutoff) if database.kind == "sqlite" else cutoff
