"""``python -m bench``: seed, serve with gunicorn, load with wrk, judge against BUDGETS.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import report
from bench.data import Sizes
from bench.mqtt import MqttTiming
from bench.retention import RetentionPlan
from bench.rules import RulesPlan
from bench.run import log, run_all
from bench.scenarios import Timing
from bench.server import ROOT

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = Sizes()
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every default size (e.g. 0.01)"
    )
    parser.add_argument("--devices", type=int, help=f"default {size.devices:,}")
    parser.add_argument("--readings", type=int, help=f"default {size.readings:,}")
    parser.add_argument("--schedules", type=int, help=f"default {size.schedules:,}")
    parser.add_argument("--commands", type=int, help=f"default {size.commands:,}")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--pg-admin-url",
        default=PG_ADMIN_URL,
        help="server where a fresh database is created and dropped",
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--duration", type=float, default=10, help="seconds per API scenario")
    parser.add_argument(
        "--page-duration", type=float, default=5, help="seconds per admin page scenario"
    )
    parser.add_argument("--warmup", type=float, default=1, help="seconds before each scenario")
    parser.add_argument("--connections", type=int, default=16, help="for the API scenarios")
    parser.add_argument(
        "--page-connections",
        type=int,
        default=1,
        help="for the admin pages (1: one person's latency, no queueing)",
    )
    parser.add_argument(
        "--baseline-seconds", type=float, default=5, help="raw sqlite3 executemany baseline"
    )
    mqtt = MqttTiming()
    parser.add_argument(
        "--no-mqtt", action="store_true", help="leave out the MQTT scenarios (no Mosquitto)"
    )
    parser.add_argument(
        "--mqtt-boards", type=int, help="MQTT device clients publishing at once (--connections)"
    )
    parser.add_argument(
        "--mqtt-window",
        type=int,
        default=mqtt.window,
        help="batches each board has waiting for their ack",
    )
    parser.add_argument(
        "--mqtt-commands", type=int, default=mqtt.commands, help="command latency samples"
    )
    parser.add_argument(
        "--mqtt-bridges", type=int, default=mqtt.bridges, help="flask mqtt run processes"
    )
    rules = RulesPlan()
    parser.add_argument(
        "--rules",
        type=int,
        default=rules.count,
        help="enabled threshold rules for the ingest-with-rules scenario (0: leave it out)",
    )
    parser.add_argument(
        "--rules-rounds",
        type=int,
        default=rules.rounds,
        help="its rounds, each an upload of 100 without and one with the rules (--duration)",
    )
    retention = RetentionPlan()
    parser.add_argument(
        "--retention-devices",
        type=int,
        default=retention.devices,
        help="devices of the expired day purged while uploads run (0: leave it out)",
    )
    parser.add_argument(
        "--retention-minutes",
        type=int,
        default=retention.minutes,
        help="readings per device in that day (one a minute)",
    )
    parser.add_argument(
        "--retention-batch",
        type=int,
        default=retention.batch,
        help="readings per upload request while it is purged",
    )
    parser.add_argument(
        "--growth",
        type=float,
        default=0,
        help="also seed this many times the readings (the same fleet over a longer history: "
        "10 makes the 10,000,000 of the 1 M / 10 M comparison) and measure ingest and the "
        "pages there (0: leave it out)",
    )
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--chart",
        type=Path,
        default=ROOT / "docs" / "bench.png",
        help="PNG of the figures against the budgets ('' for none)",
    )
    return parser.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    base = Sizes().scaled(args.scale) if args.scale != 1.0 else Sizes()
    return Sizes(
        *(
            getattr(args, name) or getattr(base, name)
            for name in ("devices", "readings", "schedules", "commands")
        )
    )


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    databases = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    timing = Timing(
        args.duration, args.page_duration, args.warmup, args.connections, args.page_connections
    )
    mqtt = None
    if not args.no_mqtt:
        mqtt = MqttTiming(
            boards=args.mqtt_boards or args.connections,
            window=args.mqtt_window,
            commands=args.mqtt_commands,
            bridges=args.mqtt_bridges,
        )
    results = run_all(
        sizes_from(args),
        databases,
        timing,
        args.workers,
        args.pg_admin_url,
        args.baseline_seconds,
        mqtt_timing=mqtt,
        rules_plan=RulesPlan(args.rules, args.rules_rounds),
        retention_plan=RetentionPlan(
            args.retention_devices, args.retention_minutes, args.retention_batch
        ),
        growth=args.growth,
    )
    results["budgets"] = report.budgets(results)
    print(report.render(results))
    path = report.write_json(results, args.results_dir)
    log(f"results: {path} (and latest.json)")
    growth = report.growth_table(results)
    if growth:
        print(growth)
        (args.results_dir / "growth.md").write_text(growth + "\n")
    if str(args.chart) not in ("", "."):
        log(f"chart: {report.chart(results, args.chart)}")
        grown = report.growth_chart(results, args.chart.with_name("bench-growth.png"))
        if grown:
            log(f"growth chart: {grown}")
    missed = [b for b in results["budgets"] if not b["ok"]]
    log(f"{len(results['budgets']) - len(missed)} of {len(results['budgets'])} budgets met")
    failed = ("error", "mqtt_error")
    return 1 if any(k in info for info in results["databases"].values() for k in failed) else 0


if __name__ == "__main__":
    sys.exit(main())
