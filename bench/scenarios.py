"""The scenarios against one served database: device API, admin pages, the scheduler CLI."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import psycopg
import requests

from bench import data
from bench.load import Load, run
from bench.seed import ADMIN_NAME, Database
from bench.server import ROOT, Gunicorn, cpu_seconds

USER_AGENT = "portal-bench"
PAGE_SIZE = 50
DEEP_PAGE = 5_000  # 1-based, as a person counts
FILTER_ARGS = ("device_id_equals", "device_devices_name_equals")


@dataclass
class Timing:
    seconds: float = 10.0  # each API scenario
    page_seconds: float = 5.0  # each admin page
    warmup: float = 1.0
    connections: int = 16
    page_connections: int = 1


# ---- database side ----------------------------------------------------------------------------
def libpq_url(database: Database) -> str:
    return database.url.replace("postgresql+psycopg://", "postgresql://", 1)


def query(database: Database, sql: str, params: tuple = ()) -> list[tuple]:
    """Run one statement outside the portal; rows for a SELECT, [] otherwise."""
    if database.kind == "sqlite":
        with sqlite3.connect(database.url.removeprefix("sqlite:///")) as conn:
            return conn.execute(sql, params).fetchall()
    with psycopg.connect(libpq_url(database), autocommit=True) as conn:
        cursor = conn.execute(sql.replace("?", "%s"), params)
        return cursor.fetchall() if cursor.description else []


def count(database: Database, table: str) -> int:
    return query(database, f"SELECT count(*) FROM {table}")[0][0]


def backend_pids(database: Database) -> list[int]:
    """PostgreSQL server processes serving the portal's connections to this database."""
    if database.kind != "postgresql":
        return []
    return [
        row[0]
        for row in query(
            database,
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()",
        )
    ]


def make_schedules_due(database: Database, now: datetime) -> tuple[int, datetime]:
    """Put every schedule's next due time on the current 5-minute boundary (within grace)."""
    due = data.due_time(now)
    value = data.sqlite_ts(due) if database.kind == "sqlite" else due
    query(database, "UPDATE schedules SET next_fire_at = ?", (value,))
    return count(database, "schedules"), due


# ---- admin pages -------------------------------------------------------------------------------
def login(base_url: str, password: str) -> str:
    """Log in as the bench admin through the form; return the Cookie header for wrk."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    page = session.get(base_url + "/login", timeout=10)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text)
    if match is None:
        raise RuntimeError("no csrf_token on /login")
    answer = session.post(
        base_url + "/login",
        allow_redirects=False,
        timeout=30,
        data={
            "username": ADMIN_NAME,
            "password": password,
            "csrf_token": match.group(1),
            "next": "",
        },
    )
    if answer.status_code != 302:
        raise RuntimeError(f"login failed: {answer.status_code}")
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies)


def filter_arg(endpoint: str, database_url: str, instance: Path) -> str:
    """The list view's URL argument for "this device" (by id when the view has that filter)."""
    from portal import create_app

    app = create_app(
        {"DATABASE_URL": database_url, "SECRET_KEY": "bench-seed", "INSTANCE_PATH": str(instance)}
    )
    admin = app.extensions["admin"]
    admin = admin[0] if isinstance(admin, list) else admin
    view = next(v for v in admin._views if getattr(v, "endpoint", None) == endpoint)
    with app.test_request_context():
        names = {view.get_filter_arg(i, f): i for i, f in enumerate(view._filters or [])}
    name = next((n for n in FILTER_ARGS if n in names), None)
    if name is None:
        raise RuntimeError(f"/admin/{endpoint}/ has no device filter")
    return f"flt0_{name}"


# The key (portal/admin/keyset.py) of the row a deep page follows, per list, in its default
# order: readings newest measured first, commands newest first by id.
DEEP_KEY_SQL = {
    "readings": "SELECT id, recorded_at FROM readings ORDER BY recorded_at DESC, id DESC "
    "LIMIT 1 OFFSET ?",
    "commands": "SELECT id, NULL FROM commands ORDER BY id DESC LIMIT 1 OFFSET ?",
}


def deep_key(database: Database, endpoint: str, rows_before: int) -> str:
    """The "after" key of the row ``rows_before`` rows down the list, as its "Older" link
    names it: "ID" by id, "ID:VALUE" by another column."""
    from portal.admin.arguments import key_text

    row_id, value = query(database, DEEP_KEY_SQL[endpoint], (rows_before - 1,))[0]
    if value is None:
        return key_text(row_id, None, by_id=True)
    if isinstance(value, str):  # SQLite's text; stored in UTC
        value = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return key_text(row_id, value, by_id=False)


# The list pages measured, and the device page's chart ranges (portal/services/charts.py).
LIST_PAGES = ("page1", "deep", "oldest", "device")
DEVICE_RANGES = ("1h", "24h", "7d", "30d", "1y")


def list_pages(
    database: Database, endpoint: str, rows: int, device: str, arg: str
) -> dict[str, str]:
    """Page 1, a deep page (5,000, or the last page of a smaller table) reached by its key as
    the "Older" links reach it, the oldest page (the "Oldest" link), and one device."""
    last = max(1, -(-rows // PAGE_SIZE))
    deep = min(DEEP_PAGE, last)
    base = f"/admin/{endpoint}/"
    deep_url = base
    if deep > 1:
        key = quote(deep_key(database, endpoint, (deep - 1) * PAGE_SIZE), safe=":")
        deep_url = f"{base}?page={deep - 1}&after={key}"
    return {
        "page1": base,
        "deep": deep_url,
        "oldest": f"{base}?page=-1&before=end",
        "device": f"{base}?{arg}={device}",
        "deep_page_number": str(deep),
    }


def page_scenario(server: Gunicorn, cookie: str, path: str, timing: Timing) -> dict:
    check = requests.get(
        server.url + path,
        headers={"Cookie": cookie, "User-Agent": USER_AGENT},
        allow_redirects=False,
        timeout=60,
    )
    if check.status_code != 200:
        raise RuntimeError(f"GET {path} answered {check.status_code}")
    load = Load(
        server.url + path,
        "page.lua",
        (cookie, USER_AGENT),
        connections=timing.page_connections,
        seconds=timing.page_seconds,
    )
    return measured(server, load, timing, None)


# Open dashboards whose pollers the live figures are scaled to, and how often each asks.
LIVE_DASHBOARDS = 100
LIVE_SECONDS = 5


def live_scenario(
    server: Gunicorn, database: Database, cookie: str, path: str, timing: Timing
) -> dict:
    """A live part's poller (portal/admin/live.py), answered 204 while nothing changed
    ("quiet") and with the whole part ("changed"); and what LIVE_DASHBOARDS open pages,
    each polling every LIVE_SECONDS, cost the server at those figures (CPU share of one
    core, the database's included on PostgreSQL)."""
    headers = {"Cookie": cookie, "User-Agent": USER_AGENT, "HX-Request": "true"}
    first = requests.get(
        server.url + path,
        headers={**headers, "X-Portal-Live-Version": ""},
        allow_redirects=False,
        timeout=60,
    )
    if first.status_code != 200:
        raise RuntimeError(f"GET {path} answered {first.status_code}")
    version = first.headers["X-Portal-Live-Version"]
    figures = {}
    for name, sent in (("quiet", version), ("changed", "")):
        load = Load(
            server.url + path,
            "page.lua",
            (cookie, USER_AGENT, sent),
            connections=timing.page_connections,
            seconds=timing.page_seconds,
        )
        found = measured(server, load, timing, database)
        per_request = found["cpu_ms_per_req"] + found.get("db_cpu_ms_per_req", 0.0)
        found["core_share_100"] = LIVE_DASHBOARDS / LIVE_SECONDS * per_request / 1000
        figures[name] = found
    return figures


# ---- measuring ---------------------------------------------------------------------------------
def measured(server: Gunicorn, load: Load, timing: Timing, database: Database | None) -> dict:
    """Warm up, then run ``load`` once and add the server's CPU time per request."""
    if timing.warmup:
        run(Load(**{**load.__dict__, "seconds": timing.warmup}))
    backends = backend_pids(database) if database else []
    before, db_before = server.cpu_seconds(), cpu_seconds(backends)
    figures = run(load)
    cpu, db_cpu = server.cpu_seconds() - before, cpu_seconds(backends) - db_before
    requests_done = max(figures["requests"], 1)
    figures["cpu_ms_per_req"] = cpu * 1000 / requests_done
    if backends:
        figures["db_cpu_ms_per_req"] = db_cpu * 1000 / requests_done
    return figures


def settled_count(database: Database, table: str, timeout: float = 60.0) -> int:
    """The row count once it stops moving: requests wrk abandoned at its deadline finish."""
    previous = count(database, table)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        current = count(database, table)
        if current == previous:
            return current
        previous = current
    return previous


def upload_scenario(
    server: Gunicorn, database: Database, tokens_file: Path, batch: int, timing: Timing
) -> dict:
    """Readings upload; afterwards every accepted reading must be stored exactly once.

    Each request carries a unique ``Idempotency-Key`` starting with this run's id, so the
    requests the server completed (including those still in flight when wrk stopped counting)
    are the idempotency records with that prefix: stored rows must be exactly those × batch.
    """
    url = server.url + "/api/v1/device/readings"
    run_id = uuid.uuid4().hex[:12]
    args = (str(tokens_file), str(batch), run_id, str(int(time.time())))
    load = Load(url, "upload.lua", args, connections=timing.connections, seconds=timing.seconds)
    if timing.warmup:
        run(
            Load(
                **{
                    **load.__dict__,
                    "seconds": timing.warmup,
                    "args": (*args[:2], "warmup" + run_id, args[3]),
                }
            )
        )
    before = settled_count(database, "readings")
    figures = measured(server, load, Timing(**{**timing.__dict__, "warmup": 0}), database)
    stored = settled_count(database, "readings") - before
    completed = query(
        database, "SELECT count(*) FROM idempotency_records WHERE key LIKE ?", (run_id + "-%",)
    )[0][0]
    accepted = figures["ok"] * batch
    figures.update(
        batch=batch,
        accepted=accepted,
        stored=stored,
        completed_requests=completed,
        stored_ok=stored == completed * batch and stored >= accepted,
        rows_per_s=accepted / figures["seconds"] if figures["seconds"] else 0.0,
    )
    return figures


def poll_scenario(server: Gunicorn, database: Database, tokens_file: Path, timing: Timing) -> dict:
    load = Load(
        server.url + "/api/v1/device/commands",
        "poll.lua",
        (str(tokens_file),),
        connections=timing.connections,
        seconds=timing.seconds,
    )
    return measured(server, load, timing, database)


def bare_scenario(server: Gunicorn, tokens_file: Path, timing: Timing) -> dict:
    args = (str(tokens_file), "1", uuid.uuid4().hex[:12], str(int(time.time())))
    load = Load(
        server.url + "/api/v1/device/readings",
        "upload.lua",
        args,
        connections=timing.connections,
        seconds=timing.seconds,
    )
    return measured(server, load, timing, None)


# ---- the scheduler -----------------------------------------------------------------------------
def tick_scenario(database: Database, env: dict[str, str]) -> dict:
    """Time ``flask scheduler tick`` with every schedule due, then once more with none due."""
    due_count, _ = make_schedules_due(database, datetime.now(UTC))
    flask = str(Path(sys.executable).with_name("flask"))
    full = _timed([flask, "scheduler", "tick"], env)
    pass_seconds = _last_pass_seconds(database)
    empty = _timed([flask, "scheduler", "tick"], env)
    return {
        "due": due_count,
        "fired": full["stdout"],
        "seconds": full["seconds"],
        "pass_seconds": pass_seconds,
        "empty_tick_seconds": empty["seconds"],
        "fired_ok": full["stdout"] == str(due_count),
    }


def _timed(command: list[str], env: dict[str, str]) -> dict:
    started = time.perf_counter()
    out = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:])} failed: {out.stderr.strip()}")
    return {"seconds": seconds, "stdout": out.stdout.strip()}


def _last_pass_seconds(database: Database) -> float | None:
    rows = query(
        database, "SELECT started_at, finished_at FROM scheduler_passes ORDER BY id DESC LIMIT 1"
    )
    if not rows:
        return None
    started, finished = rows[0]
    if isinstance(started, str):
        started, finished = (datetime.fromisoformat(v) for v in (started, finished))
    return (finished - started).total_seconds()
