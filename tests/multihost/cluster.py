"""A portal on several hosts of one machine: network namespaces on a private bridge, a relay to
PostgreSQL and Redis, and the hosts' processes (gunicorn, ``flask scheduler run``).

Everything made here is named ``pmh<run id>…`` (links) or ``pmh-<run id>-…`` (namespaces), and
only addresses of ``SUBNET`` are used, on the bridge and in the namespaces made here. The
namespaces have no route beyond that subnet, so nothing they send can leave the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PREFIX = "pmh"
SUBNET = "10.213.47"
# The root namespace on the test network: the relay listens here and the test's client sends
# from here; the second address is a second client (its own failed-login count).
GATEWAY = f"{SUBNET}.1"
SECOND_CLIENT = f"{SUBNET}.2"
LOCK_PATH = Path(tempfile.gettempdir(), "portal-multihost.lock")
STALE_LINK = re.compile(rf"^{PREFIX}[0-9a-f]{{6}}")
STALE_NETNS = re.compile(rf"^{PREFIX}-[0-9a-f]{{6}}-")


class CommandFailed(RuntimeError):
    pass


def ip(*args: str, check: bool = True) -> str:
    """Run ``ip ARGS``; raise CommandFailed with its error output when it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        raise CommandFailed(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


@contextlib.contextmanager
def exclusive(timeout: float) -> Iterator[None]:
    """One multi-host run at a time on this machine: they would share the subnet.

    The lock is a ``flock``, so a run that crashes releases it with its process.
    """
    with open(LOCK_PATH, "a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise CommandFailed(
                        f"another multi-host run held {LOCK_PATH} for {timeout:.0f} s"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _netns_pids(netns: str) -> list[int]:
    return [int(pid) for pid in ip("netns", "pids", netns, check=False).split()]


def _kill_netns(netns: str) -> None:
    """SIGKILL what still runs in a namespace made by this test, then delete it."""
    for pid in _netns_pids(netns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    ip("netns", "del", netns, check=False)


def remove_stale() -> list[str]:
    """Remove namespaces and links left by a run that crashed; returns their names.

    Call it holding ``exclusive()``: then nothing with these names belongs to a live run.
    """
    removed = []
    for line in ip("netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        if STALE_NETNS.match(name):
            _kill_netns(name)
            removed.append(name)
    for line in ip("-o", "link", "show").splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if STALE_LINK.match(name):
            ip("link", "del", name, check=False)
            removed.append(name)
    return removed


def subnet_in_use() -> str:
    """Addresses of SUBNET on this machine (empty when the subnet is free to use)."""
    return ip("-o", "addr", "show", "to", f"{SUBNET}.0/24").strip()


class Network:
    """A bridge in the root namespace (GATEWAY) and one namespace per host, each joined to the
    bridge by a veth pair."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.bridge = f"{PREFIX}{run_id}br"
        self.namespaces: list[str] = []

    def create_bridge(self) -> None:
        ip("link", "add", "name", self.bridge, "type", "bridge")
        for address in (GATEWAY, SECOND_CLIENT):
            ip("addr", "add", f"{address}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def add_host(self, index: int, name: str) -> tuple[str, str]:
        """Make host ``index`` (1-99); returns its namespace and its address."""
        netns = f"{PREFIX}-{self.run_id}-{name}"
        ip("netns", "add", netns)
        self.namespaces.append(netns)
        outside, inside = f"{PREFIX}{self.run_id}{index}o", f"{PREFIX}{self.run_id}{index}i"
        ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", netns)
        ip("link", "set", outside, "master", self.bridge, "up")
        address = f"{SUBNET}.{10 + index}"
        ip("-n", netns, "addr", "add", f"{address}/24", "dev", inside)
        ip("-n", netns, "link", "set", inside, "up")
        ip("-n", netns, "link", "set", "lo", "up")
        return netns, address

    def remove(self) -> None:
        """Delete the namespaces (their veth pairs go with them) and the bridge."""
        for netns in self.namespaces:
            _kill_netns(netns)
        ip("link", "del", self.bridge, check=False)
        for line in ip("-o", "link", "show").splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name.startswith(f"{PREFIX}{self.run_id}"):
                ip("link", "del", name, check=False)


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


class Process:
    """A command in its own process group, output to ``log_path``; inside ``netns`` if given."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_path: Path,
        netns: str | None = None,
        url: str = "",
    ) -> None:
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.netns, self.url = netns, url
        self.popen: subprocess.Popen | None = None
        self.killed_at: float | None = None

    def start(self) -> None:
        argv = ["ip", "netns", "exec", self.netns, *self.argv] if self.netns else self.argv
        with open(self.log_path, "ab") as log:
            # `ip netns exec` execs the command in place, so this pid is the command's own
            # and, with a new session, the id of its process group.
            self.popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole process group (a gunicorn master and its workers at once)."""
        self._signal_group(signal.SIGKILL)
        self.killed_at = time.time()
        assert self.popen is not None
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL whatever of the group is left after ``timeout``."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        self._signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)


class Relay:
    """``forward.py`` on GATEWAY, relaying to each ``HOST:PORT`` target; ``ports`` maps a target
    to the port that reaches it from the namespaces."""

    name = "relay"

    def __init__(self, targets: list[str], log_path: Path) -> None:
        self.targets, self.log_path = targets, log_path
        self.popen: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}

    def start(self, timeout: float = 15.0) -> None:
        script = Path(__file__).with_name("forward.py")
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, str(script), GATEWAY, *self.targets],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        assert self.popen.stdout is not None
        ready, _, _ = select.select([self.popen.stdout], [], [], timeout)
        line = self.popen.stdout.readline() if ready else b""
        if not line:
            raise CommandFailed(f"the relay did not start; see {self.log_path}")
        self.ports = json.loads(line)

    def tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)

    def stop(self) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def wait_for(predicate, timeout: float, what: str, step: float = 0.2, check=None):
    """Poll ``predicate`` until it returns a true value (returned), at most ``timeout`` s.

    ``check`` is called on each round and may raise to stop early (a process that died).
    """
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(step)
