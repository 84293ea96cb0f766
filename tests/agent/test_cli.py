"""``portal-agent`` as a user runs it: a real process against a live portal."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from tests.agent.conftest import wait_for

SCRIPT = os.path.join(os.path.dirname(sys.executable), "portal-agent")


def agent_cmd(url, state_dir, *extra, token=None):
    cmd = [SCRIPT, "--url", url, "--state-dir", str(state_dir), *extra]
    return cmd + (["--token", token] if token else [])


def run(cmd, env=None, timeout=60):
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def free_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_once_sends_the_simulated_readings_and_exits_0(portal, tmp_path):
    done = run(agent_cmd(portal.url, tmp_path / "s", "--once", token=portal.token))
    assert done.returncode == 0, done.stderr
    assert portal.metrics() == ["humidity", "temperature"]


def test_token_is_taken_from_the_environment(portal, tmp_path):
    done = run(
        agent_cmd(portal.url, tmp_path / "s", "--once"), env={"PORTAL_AGENT_TOKEN": portal.token}
    )
    assert done.returncode == 0, done.stderr
    assert portal.metrics() == ["humidity", "temperature"]


def test_once_without_a_portal_exits_1_and_a_later_run_sends_what_it_kept(portal, tmp_path):
    offline = run(agent_cmd(free_port_url(), tmp_path / "s", "--once", token=portal.token))
    online = run(agent_cmd(portal.url, tmp_path / "s", "--once", token=portal.token))
    assert (offline.returncode, online.returncode) == (1, 0)
    assert portal.metrics() == ["humidity", "humidity", "temperature", "temperature"]


def test_missing_token_is_a_usage_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PORTAL_AGENT_TOKEN"}
    done = subprocess.run(
        agent_cmd("http://127.0.0.1:1", tmp_path / "s"),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2
    assert "a device token is required" in done.stderr


def test_unknown_handler_is_refused_with_a_clear_message(tmp_path):
    done = run(agent_cmd("http://127.0.0.1:1", tmp_path / "s", "--handler", "blinker", token="t"))
    assert done.returncode == 1
    assert "unknown handler 'blinker'" in done.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_agent_cleanly(portal, tmp_path, signum):
    process = subprocess.Popen(
        agent_cmd(
            portal.url,
            tmp_path / "s",
            "--interval",
            "0.2",
            "--handler",
            "relay",
            token=portal.token,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: portal.metrics(), what="the agent's first readings")
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert f"received {signum.name}; stopping" in stderr


def test_second_agent_on_the_same_state_dir_is_refused(portal, tmp_path):
    process = subprocess.Popen(
        agent_cmd(portal.url, tmp_path / "s", token=portal.token),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: portal.metrics(), what="the first agent to start")
        second = run(agent_cmd(portal.url, tmp_path / "s", "--once", token=portal.token))
    finally:
        process.terminate()
        process.communicate(timeout=15)
    assert second.returncode == 1
    assert "another agent is using" in second.stderr


def test_default_state_dir_differs_per_portal_and_token(tmp_path):
    from portal_agent.cli import parse_args

    dirs = {
        parse_args(["--url", url, "--token", token]).state_dir
        for url, token in [
            ("http://a:5000", "t1"),
            ("http://a:5000/", "t1"),
            ("http://a:5000", "t2"),
            ("http://b:5000", "t1"),
        ]
    }
    assert len(dirs) == 3
