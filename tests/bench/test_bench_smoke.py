"""The benchmark still works: `python -m bench` at a tiny scale, SQLite only, no timing asserts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = [
    f"{table}_{page}{suffix}"
    for table in ("readings", "commands")
    for page in ("page1", "deep", "device")
    for suffix in ("", "_small")
]
SCENARIOS += ["upload_100", "upload_1", "poll_empty", "device_page"]
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
]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk)")
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "bench", *TINY, "--results-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
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


@pytest.mark.parametrize("name", ["upload_100", "upload_1"])
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
