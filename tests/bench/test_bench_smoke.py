"""The benchmark still works: `python -m bench` at a tiny scale, SQLite only, no timing asserts.

The MQTT scenarios (a Mosquitto of the bench's own, ``flask mqtt run``, paho boards) run too
when Mosquitto is installed; their tests skip otherwise (fail under PORTAL_TEST_REQUIRE_MQTT).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.mqtt import missing as mqtt_missing
from bench.report import RULES_BUDGET, growth_table
from bench.scenarios import DEVICE_RANGES, LIST_PAGES
from tests.mqtt_broker import require_mosquitto

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = [
    f"{table}_{page}{suffix}"
    for table in ("readings", "commands")
    for page in LIST_PAGES
    for suffix in ("", "_small", "_base", "_grown")
]
SCENARIOS += [
    f"device_page_{key}{suffix}" for key in DEVICE_RANGES for suffix in ("", "_base", "_grown")
]
SCENARIOS += ["upload_100", "upload_1", "poll_empty", "upload_100_base", "upload_100_grown"]
RULES_SCENARIOS = ["upload_100_no_rules", "upload_100_rules"]
SCENARIOS += RULES_SCENARIOS
SCENARIOS += ["upload_retention_quiet", "upload_retention_purge"]
RULES = 40
MQTT_SCENARIOS = ["mqtt_upload_100", "mqtt_command_latency"]
MQTT_COMMANDS = 20
TINY = [
    "--db",
    "sqlite",
    "--devices",
    "20",
    "--readings",
    "2000",
    "--schedules",
    "20",
    "--commands",
    "200",
    "--workers",
    "2",
    "--connections",
    "4",
    "--duration",
    "1",
    "--page-duration",
    "1",
    "--warmup",
    "0",
    "--baseline-seconds",
    "0.5",
    "--chart",
    "",
    "--mqtt-commands",
    str(MQTT_COMMANDS),
    "--rules",
    str(RULES),
    "--rules-rounds",
    "1",
    "--growth",
    "2",
]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk)")
    out = tmp_path_factory.mktemp("bench")
    mqtt = [] if mqtt_missing() is None else ["--no-mqtt"]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *TINY, *mqtt, "--results-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "latest.json").read_text())


def _scenario(results: dict, name: str) -> dict:
    found = [s for s in results["scenarios"] if s["db"] == "sqlite" and s["name"] == name]
    assert len(found) == 1, f"{name} ran {len(found)} times"
    return found[0]


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_completes_requests(results, name):
    assert _scenario(results, name)["requests"] > 0


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_answers_only_2xx(results, name):
    scenario = _scenario(results, name)
    assert (scenario["non2xx"], scenario["sample_bad"]) == (0, None)


@pytest.mark.parametrize(
    "name", ["upload_100", "upload_1", "upload_100_base", "upload_100_grown", *RULES_SCENARIOS]
)
def test_upload_stores_every_completed_request_once(results, name):
    scenario = _scenario(results, name)
    assert scenario["stored"] == scenario["completed_requests"] * scenario["batch"] > 0
    assert scenario["stored_ok"] is True


def test_scheduler_tick_fires_every_due_schedule(results):
    tick = results["databases"]["sqlite"]["tick"]
    assert tick["fired"] == str(tick["due"]) == "20"


@pytest.mark.parametrize("baseline", ["bare_flask", "sqlite_executemany"])
def test_baseline_is_measured(results, baseline):
    figures = results["baselines"][baseline]
    assert figures.get("requests", figures.get("rows", 0)) > 0


def test_every_budget_has_a_verdict(results):
    budgets = results["budgets"]
    assert len(budgets) >= 20
    assert all(isinstance(b["ok"], bool) and b["measured"] is not None for b in budgets)


def test_retention_purges_the_expired_day_while_uploads_run(results):
    purge = _scenario(results, "upload_retention_purge")["purge"]
    # The tiny fleet: its 20 devices, a reading a minute for a day.
    assert (purge["rows"], purge["purged"], purge["left"], purge["error"]) == (
        28_800,
        28_800,
        0,
        "",
    )


def test_ingest_with_rules_judges_the_uploads(results):
    scenario = _scenario(results, "upload_100_rules")
    assert (scenario["rules"], scenario["rule_devices"]) == (RULES, 20)
    outcome = scenario["outcome"]
    # Two rules in forty raise and clear on every new batch of their device's readings; one
    # waits out a day.
    assert outcome["alerts"] == outcome["resolved"] > 0
    assert outcome["rule_commands"] == outcome["deliveries"] == 2 * outcome["alerts"]
    assert outcome["pending_rules"] >= 1


def test_ingest_with_rules_budget_is_judged(results):
    judged = {b["budget"]: b for b in results["budgets"] if b["db"] == "sqlite"}
    assert judged[RULES_BUDGET]["measured"] > 0


# ---- devices over MQTT -------------------------------------------------------------------------
@pytest.fixture
def mqtt_results(results) -> dict:
    require_mosquitto()
    assert "mqtt_error" not in results["databases"]["sqlite"], results["databases"]["sqlite"]
    return results


@pytest.mark.parametrize("name", MQTT_SCENARIOS)
def test_mqtt_scenario_completes_without_errors(mqtt_results, name):
    scenario = _scenario(mqtt_results, name)
    assert scenario["requests"] > 0
    assert (scenario["non2xx"], scenario["sample_bad"]) == (0, None)


def test_mqtt_ingest_stores_every_acknowledged_batch_once(mqtt_results):
    ingest = _scenario(mqtt_results, "mqtt_upload_100")
    assert ingest["errors"]["unanswered"] == 0
    assert ingest["stored"] == ingest["completed_requests"] * 100 == ingest["accepted"] > 0
    assert ingest["stored_ok"] is True and ingest["rows_per_s"] > 0


def test_mqtt_every_command_reaches_the_device_once(mqtt_results):
    latency = _scenario(mqtt_results, "mqtt_command_latency")
    assert latency["received"] == latency["requests"] == MQTT_COMMANDS
    assert latency["errors"] == {"lost": 0, "duplicates": 0}
    assert 0 < latency["latency_us"]["p50"] <= latency["latency_us"]["p99"]


def test_mqtt_budgets_are_judged(mqtt_results):
    judged = {b["budget"]: b for b in mqtt_results["budgets"] if b["db"] == "sqlite"}
    for name in (
        "MQTT ingest 100/batch: rows/s vs HTTP upload 100/req",
        "MQTT ingest: error acks + unanswered + not-stored-once",
        "command API → device over MQTT: p50",
        "command API → device over MQTT: p99",
    ):
        assert judged[name]["measured"] is not None, name


def test_growth_comparison_seeds_the_longer_history_and_judges_it(results):
    info = results["databases"]["sqlite"]
    assert (info["sizes"]["readings"], info["grown_sizes"]["readings"]) == (2000, 4000)
    judged = [b["budget"] for b in results["budgets"] if "at 4,000 vs 2,000" in b["budget"]]
    # Each page and device range: its p50 and its growth; and ingest.
    assert len(judged) == 2 * (2 * 4 + 5) + 1
    table = growth_table(results)
    assert table.count("\n") == 2 + 2 * 4 + 5 + 1 - 1
    assert "| upload_100 | sqlite |" in table
