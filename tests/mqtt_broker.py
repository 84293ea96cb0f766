"""A Mosquitto of the test's own: own config, own port, dynamic security on, anonymous off.

It never touches the machine's broker on 1883. ``Broker.start()`` writes a config and a
dynamic-security file (one admin, ``portal-admin``) into a folder of its own and runs
``mosquitto -c``; ``stop()`` (SIGTERM) and ``kill()`` (SIGKILL) end it, ``start()`` again brings
it back on the same port with what it persisted (sessions, retained messages, its clients).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

PLUGIN_PATHS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
)
ADMIN_USER = "portal-admin"
ADMIN_PASSWORD = "portal-admin-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def plugin_path() -> str | None:
    return next((path for path in PLUGIN_PATHS if os.path.exists(path)), None)


def require_mosquitto() -> None:
    """Skip (or, under CI's PORTAL_TEST_REQUIRE_MQTT, fail) when Mosquitto is not installed."""
    missing = [name for name in ("mosquitto", "mosquitto_ctrl") if shutil.which(name) is None]
    if plugin_path() is None:
        missing.append("mosquitto_dynamic_security.so")
    if missing:
        reason = "MQTT tests need Debian's mosquitto package: missing " + ", ".join(missing)
        if os.environ.get("PORTAL_TEST_REQUIRE_MQTT"):
            pytest.fail(reason)
        pytest.skip(reason)


class Broker:
    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.admin_user = ADMIN_USER
        self.admin_password = ADMIN_PASSWORD
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "mosquitto.conf"
        self.dynsec = folder / "dynamic-security.json"
        self.log = folder / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def app_config(self) -> dict[str, str]:
        """The portal settings that point a bridge at this broker as its admin."""
        return {
            "MQTT_URL": self.url,
            "MQTT_USERNAME": self.admin_user,
            "MQTT_PASSWORD": self.admin_password,
        }

    def start(self) -> Broker:
        if not self.dynsec.exists():
            subprocess.run(
                ["mosquitto_ctrl", "dynsec", "init", str(self.dynsec), ADMIN_USER, ADMIN_PASSWORD],
                check=True,
                capture_output=True,
            )
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"plugin {plugin_path()}\n"
            f"plugin_opt_config_file {self.dynsec}\n"
            "persistence true\n"
            f"persistence_location {self.folder}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 100000\n"
            "set_tcp_nodelay true\n"
            "log_dest stderr\n"
            # Started as root, mosquitto would become the "mosquitto" user, which may not read a
            # test's private folder: it stays the user who runs the tests.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
        )
        log = self.log.open("ab")
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(self.config)], stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return self
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start listening within 10 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def ctrl(self, *args: str) -> str:
        """``mosquitto_ctrl dynsec …`` as the admin; returns its output."""
        done = subprocess.run(
            [
                "mosquitto_ctrl",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-u",
                self.admin_user,
                "-P",
                self.admin_password,
                "dynsec",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return done.stdout + done.stderr
