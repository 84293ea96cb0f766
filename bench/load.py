"""Load from wrk: one run of a Lua script, read back from the JSON line its ``done()`` prints."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parent / "lua"
MARK = "WRK_JSON "


@dataclass
class Load:
    """How to drive one scenario."""

    url: str
    script: str  # a file in bench/lua/
    args: tuple[str, ...] = ()
    connections: int = 16
    threads: int = 2
    seconds: float = 10.0
    timeout_s: int = 10


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    return path


def run(load: Load) -> dict:
    """Run wrk once; return its figures: requests, ok, non2xx, errors, latency_us, rps."""
    threads = min(load.threads, load.connections)
    command = [
        wrk_path(),
        "-t",
        str(threads),
        "-c",
        str(load.connections),
        "-d",
        f"{max(load.seconds, 1):.0f}s",
        "--timeout",
        f"{load.timeout_s}s",
        "-s",
        str(LUA / load.script),
        load.url,
        "--",
        *load.args,
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=load.seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith(MARK)), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout}")
    figures = json.loads(line[len(MARK) :])
    seconds = figures["duration_us"] / 1e6
    figures["seconds"] = round(seconds, 3)
    figures["rps"] = figures["requests"] / seconds if seconds else 0.0
    figures["connections"] = load.connections
    return figures
