"""One whole benchmark run: baselines, then each database seeded, served, loaded and ticked."""

from __future__ import annotations

import contextlib
import os
import platform
import secrets
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from bench import mqtt as bench_mqtt
from bench import retention as bench_retention
from bench import rules as bench_rules
from bench import scenarios as sc
from bench import seed
from bench.data import Sizes
from bench.server import ROOT, Gunicorn


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_all(
    sizes: Sizes,
    databases: list[str],
    timing: sc.Timing,
    workers: int,
    pg_admin_url: str,
    baseline_seconds: float,
    workdir: Path | None = None,
    mqtt_timing: bench_mqtt.MqttTiming | None = None,
    rules_plan: bench_rules.RulesPlan | None = None,
    retention_plan: bench_retention.RetentionPlan | None = None,
    growth: float = 0.0,
) -> dict:
    """Run every scenario; return the results (figures only; budgets are judged in report)."""
    with tempfile.TemporaryDirectory(prefix="portal-bench-", dir=workdir) as tmp:
        work = Path(tmp)
        now = datetime.now(UTC)
        results: dict = {
            "meta": _meta(
                sizes, databases, timing, workers, baseline_seconds, mqtt_timing, rules_plan
            ),
            "baselines": {},
            "databases": {},
            "scenarios": [],
        }
        log(f"baseline: raw sqlite3 bulk insert of {sizes.readings:,} readings and the rest")
        base_file = work / "baseline.sqlite3"
        results["baselines"]["sqlite_bulk_insert_seconds"] = seed.baseline_bulk_insert(
            base_file, sizes, now
        )
        log("baseline: raw sqlite3 executemany, 100-row transactions")
        results["baselines"]["sqlite_executemany"] = seed.baseline_executemany(
            base_file, baseline_seconds, sizes.devices, now
        )
        tokens_file = work / "bare-tokens.txt"
        tokens_file.write_text("pd_bare\n")
        log(f"baseline: bare Flask JSON route, gunicorn {workers} sync workers")
        with Gunicorn("bench.bare_app:app", {}, workers, work / "bare.log") as bare:
            figures = sc.bare_scenario(bare, tokens_file, timing)
            figures["worker_rss_mib"] = bare.max_rss_mib()
        results["baselines"]["bare_flask"] = figures
        for kind in databases:
            try:
                _one_database(
                    kind,
                    sizes,
                    timing,
                    workers,
                    pg_admin_url,
                    work,
                    now,
                    results,
                    mqtt_timing,
                    rules_plan,
                    retention_plan,
                    growth,
                )
            except Exception as exc:  # keep the other database's figures; report the failure
                log(f"{kind}: FAILED: {exc.__class__.__name__}: {exc}")
                results["databases"].setdefault(kind, {})["error"] = (
                    f"{exc.__class__.__name__}: {exc}"
                )
        results["meta"]["finished_at"] = datetime.now(UTC).isoformat()
        return results


def _one_database(
    kind: str,
    sizes: Sizes,
    timing: sc.Timing,
    workers: int,
    pg_admin_url: str,
    work: Path,
    now: datetime,
    results: dict,
    mqtt_timing: bench_mqtt.MqttTiming | None = None,
    rules_plan: bench_rules.RulesPlan | None = None,
    retention_plan: bench_retention.RetentionPlan | None = None,
    growth: float = 0.0,
) -> None:
    instance = work / f"instance-{kind}"
    made: list[seed.Database] = []
    try:
        large = _database(kind, work, "large", pg_admin_url, made)
        small = _database(kind, work, "small", pg_admin_url, made)
        log(
            f"{kind}: seeding {sizes.devices:,} devices, {sizes.readings:,} readings, "
            f"{sizes.commands:,} commands, {sizes.schedules:,} schedules"
        )
        seeded = seed.seed(large, sizes, now, instance)
        small_seeded = seed.seed(small, sizes.small(), now, instance)
        info = {
            "seed_seconds": seeded.seconds,
            "sizes": sizes.__dict__,
            "small_sizes": sizes.small().__dict__,
        }
        results["databases"][kind] = info
        log(f"{kind}: seeded in {seeded.seconds:.1f} s")
        tokens_file = work / f"tokens-{kind}.txt"
        tokens_file.write_text("\n".join(seeded.tokens) + "\n")
        env = {
            "PORTAL_DATABASE_URL": large.url,
            "PORTAL_SECRET_KEY": secrets.token_hex(16),
            "FLASK_APP": "portal",
        }
        args = {e: sc.filter_arg(e, large.url, instance) for e in ("readings", "commands")}
        # The busy device (a tenth of all rows): the one whose page people open, and the
        # small data set's device 1 still fills a whole page, so the comparison is like for like.
        device = 1
        add = _adder(results, kind)
        with Gunicorn("wsgi:app", env, workers, work / f"portal-{kind}.log") as server:
            log(f"{kind}: device API on {server.url}")
            add("upload_100", sc.upload_scenario(server, large, tokens_file, 100, timing))
            add("upload_1", sc.upload_scenario(server, large, tokens_file, 1, timing))
            add("poll_empty", sc.poll_scenario(server, large, tokens_file, timing))
            if mqtt_timing is not None:
                # Beside the HTTP figures, on the same database and the same web server.
                outcome = bench_mqtt.run(
                    work, large, env, server, timing.seconds, timing.warmup, mqtt_timing, log
                )
                for name, figures in outcome.figures.items():
                    add(name, figures)
                if outcome.error:
                    info["mqtt_error"] = outcome.error
                    log(f"{kind}: {outcome.error}")
            log(f"{kind}: admin pages")
            cookie = sc.login(server.url, seeded.admin_password)
            _pages(server, large, cookie, sizes, device, args, timing, add, "")
            _device_pages(server, cookie, device, timing, add, "")
            live = sc.live_scenario(server, large, cookie, "/admin/live/", timing)
            for state, figures in live.items():
                add(f"dashboard_live_{state}", figures, path="/admin/live/")
            if rules_plan is not None and rules_plan.count:
                # Last: the commands its alerts queue must not fill the queues others poll.
                log(f"{kind}: upload of 100 with 0 and {rules_plan.count:,} threshold rules")
                without, with_rules = bench_rules.run(
                    server, large, tokens_file, timing, rules_plan, sizes.devices, now, instance
                )
                add("upload_100_no_rules", without)
                add("upload_100_rules", with_rules)
                info["rules_seconds"] = with_rules["scenario_seconds"]
                log(f"{kind}: rules took {info['rules_seconds']:.0f} s; {with_rules['outcome']}")
            if retention_plan is not None and retention_plan.devices:
                # Last on this server: it adds a day of readings (and purges it).
                log(f"{kind}: upload of {retention_plan.batch} while a day of readings is purged")
                quiet, during = bench_retention.run_scenario(
                    server, large, tokens_file, timing, retention_plan, sizes.devices, now, instance
                )
                add("upload_retention_quiet", quiet)
                add("upload_retention_purge", during)
                purge = during["purge"]
                log(
                    f"{kind}: purged {purge['purged']:,} of {purge['rows']:,} readings in "
                    f"{purge['seconds']:.1f} s, {purge['passes']} pass(es); {purge['left']} left"
                )
            info["worker_rss_mib"] = server.max_rss_mib()
        small_env = {**env, "PORTAL_DATABASE_URL": small.url}
        with Gunicorn("wsgi:app", small_env, workers, work / f"small-{kind}.log") as server:
            log(f"{kind}: admin pages on the small tables")
            cookie = sc.login(server.url, small_seeded.admin_password)
            _pages(server, small, cookie, sizes.small(), device, args, timing, add, "_small")
        log(f"{kind}: flask scheduler tick with {sizes.schedules:,} schedules due")
        info["tick"] = sc.tick_scenario(large, {**os.environ, **env})
        if growth > 1:
            small.drop()  # room on the server for the grown data set
            base = _Side("_base", large, sizes, seeded.admin_password, tokens_file, env)
            _grown(
                kind, base, growth, timing, workers, pg_admin_url, work, now, results, made, args
            )
    finally:
        for database in made:
            database.drop()


def _database(kind: str, work: Path, label: str, pg_admin_url: str, made: list) -> seed.Database:
    database = (
        seed.sqlite_database(work, f"{label}-{kind}")
        if kind == "sqlite"
        else seed.postgres_database(pg_admin_url, label)
    )
    made.append(database)
    return database


def _adder(results: dict, kind: str):
    def add(name: str, figures: dict, path: str = "") -> None:
        results["scenarios"].append({"db": kind, "name": name, "path": path, **figures})
        latency = figures["latency_us"]
        rows = f", {figures['rows_per_s']:,.0f} rows/s" if "rows_per_s" in figures else ""
        log(
            f"  {kind} {name}: {figures['rps']:.0f} req/s{rows}, "
            f"p50 {latency['p50'] / 1000:.1f} ms, p99 {latency['p99'] / 1000:.1f} ms, "
            f"non-2xx {figures['non2xx']}"
        )

    return add


def _pages(
    server, database, cookie, sizes: Sizes, device: int, args: dict, timing, add, suffix: str
) -> None:
    for endpoint, rows in (("readings", sizes.readings), ("commands", sizes.commands)):
        value = _filter_value(args[endpoint], device)
        pages = sc.list_pages(database, endpoint, rows, value, args[endpoint])
        for page in sc.LIST_PAGES:
            figures = sc.page_scenario(server, cookie, pages[page], timing)
            if page == "deep":
                figures["page_number"] = int(pages["deep_page_number"])
            add(f"{endpoint}_{page}{suffix}", figures, path=pages[page])


def _filter_value(arg: str, device: int) -> str:
    """What the list's device filter ``arg`` takes for ``device``: its id or its name."""
    return str(device) if arg.endswith("device_id_equals") else f"bench-{device:05d}"


def _device_path(device: int, key: str) -> str:
    return f"/admin/devices/details/?id={device}&range={key}"


def _device_pages(server, cookie: str, device: int, timing, add, suffix: str) -> None:
    """The busy device's page with each chart range (raw readings or roll-ups)."""
    for key in sc.DEVICE_RANGES:
        path = _device_path(device, key)
        add(f"device_page_{key}{suffix}", sc.page_scenario(server, cookie, path, timing), path=path)


@dataclass
class _Side:
    """One side of the growth comparison: a seeded database and its server."""

    suffix: str
    database: seed.Database
    sizes: Sizes
    password: str
    tokens: Path
    env: dict[str, str]


def _grown(
    kind: str,
    base: _Side,
    growth: float,
    timing: sc.Timing,
    workers: int,
    pg_admin_url: str,
    work: Path,
    now: datetime,
    results: dict,
    made: list,
    args: dict,
) -> None:
    """The growth comparison: the same fleet with ``growth``× the readings (a longer history),
    measured with the scenarios whose cost could grow with them: ingest, the list pages and
    the device page's ranges. Both data sets are served at once and each scenario runs on one
    straight after the other (in turns first), so the machine's drift weighs on both alike;
    the names end in "_base" and "_grown"."""
    sizes = replace(base.sizes, readings=int(base.sizes.readings * growth))
    # The base served every scenario before, the retention one included (a day of readings
    # loaded and deleted): vacuumed now, or autovacuum would do it while the pairs run and slow
    # one side (PostgreSQL's page 5,000 took 85 ms instead of 26 in a run without this).
    sc.query(base.database, "VACUUM ANALYZE" if kind == "postgresql" else "VACUUM")
    database = _database(kind, work, "grown", pg_admin_url, made)
    log(f"{kind}: seeding {sizes.readings:,} readings for the growth comparison")
    seeded = seed.seed(database, sizes, now, work / f"instance-{kind}-grown")
    info = results["databases"][kind]
    info["grown_seed_seconds"] = seeded.seconds
    info["grown_sizes"] = sizes.__dict__
    log(f"{kind}: seeded in {seeded.seconds:.1f} s")
    tokens = work / f"tokens-{kind}-grown.txt"
    tokens.write_text("\n".join(seeded.tokens) + "\n")
    env = {**base.env, "PORTAL_DATABASE_URL": database.url}
    grown = _Side("_grown", database, sizes, seeded.admin_password, tokens, env)
    add = _adder(results, kind)
    with contextlib.ExitStack() as stack:
        served = [
            (
                side,
                stack.enter_context(
                    Gunicorn("wsgi:app", side.env, workers, work / f"pair{side.suffix}-{kind}.log")
                ),
            )
            for side in (base, grown)
        ]
        cookies = {side.suffix: sc.login(server.url, side.password) for side, server in served}

        def upload(side: _Side, server: Gunicorn) -> tuple[dict, str]:
            return sc.upload_scenario(server, side.database, side.tokens, 100, timing), ""

        def page(endpoint: str, which: str):
            def measure(side: _Side, server: Gunicorn) -> tuple[dict, str]:
                rows = getattr(side.sizes, endpoint)
                value = _filter_value(args[endpoint], 1)
                path = sc.list_pages(side.database, endpoint, rows, value, args[endpoint])[which]
                return sc.page_scenario(server, cookies[side.suffix], path, timing), path

            return measure

        def device_page(key: str):
            def measure(side: _Side, server: Gunicorn) -> tuple[dict, str]:
                path = _device_path(1, key)
                return sc.page_scenario(server, cookies[side.suffix], path, timing), path

            return measure

        jobs = [
            (f"{endpoint}_{which}", page(endpoint, which))
            for endpoint in ("readings", "commands")
            for which in sc.LIST_PAGES
        ]
        jobs += [(f"device_page_{key}", device_page(key)) for key in sc.DEVICE_RANGES]
        # Last: the readings it adds leave SQLite's write-ahead log long for a while, which
        # the page that came next would pay for (1.4× on page 1 when it came first).
        jobs += [("upload_100", upload)]
        for turn, (name, measure) in enumerate(jobs):
            for side, server in served if turn % 2 == 0 else served[::-1]:
                figures, path = measure(side, server)
                add(f"{name}{side.suffix}", figures, path=path)
        info["grown_worker_rss_mib"] = served[1][1].max_rss_mib()
    database.drop()


def _meta(
    sizes: Sizes,
    databases: list[str],
    timing: sc.Timing,
    workers: int,
    baseline_seconds: float,
    mqtt_timing: bench_mqtt.MqttTiming | None = None,
    rules_plan: bench_rules.RulesPlan | None = None,
) -> dict:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        if subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip():
            commit += "+uncommitted"
    except OSError:
        commit = ""
    return {
        "started_at": datetime.now(UTC).isoformat(),
        "commit": commit,
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "server": f"gunicorn --workers {workers} --worker-class sync on 127.0.0.1",
        "workers": workers,
        "sizes": sizes.__dict__,
        "databases": databases,
        "timing": timing.__dict__,
        "baseline_seconds": baseline_seconds,
        "load": "wrk 4 with bench/lua/*.lua",
        "rules": rules_plan.__dict__ if rules_plan else None,
        "mqtt": (
            {**mqtt_timing.__dict__, "load": "paho boards in the bench process (bench/mqtt.py)"}
            if mqtt_timing
            else None
        ),
    }
