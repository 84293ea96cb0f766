"""A live portal for the agent: real HTTP on 127.0.0.1 (werkzeug in a thread, restartable on the
same port), its own instance folder and SQLite database, one operator and one device.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from portal import create_app
from portal.extensions import db
from portal.models import Command, Device, Reading, Role
from portal.services.commands import enqueue_command
from portal.services.devices import create_device
from portal.services.users import create_user
from portal_agent.backoff import Backoff
from portal_agent.client import PortalClient
from portal_agent.ledger import CommandLedger
from portal_agent.queue import ReadingQueue
from portal_agent.runner import Agent
from tests.conftest import wait_for  # noqa: F401 - tests here import it from this module

LEASE_SECONDS = 1


class LiveServer:
    """The app on 127.0.0.1; ``stop`` and ``start`` again keep the port.

    Single-threaded (HTTP/1.0, one connection per request), so once stopped nothing answers:
    a threaded server's keep-alive connections would outlive ``stop``.
    """

    def __init__(self, app) -> None:
        self.app, self.port, self._server = app, 0, None

    def start(self) -> None:
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=False)
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(10)
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Portal:
    app: object
    server: LiveServer
    device_id: int
    token: str

    @property
    def url(self) -> str:
        return self.server.url

    def values(self, metric: str = "count") -> list[float]:
        with self.app.app_context():
            return sorted(
                db.session.scalars(
                    select(Reading.value).where(
                        Reading.device_id == self.device_id, Reading.metric == metric
                    )
                )
            )

    def metrics(self) -> list[str]:
        with self.app.app_context():
            return sorted(
                db.session.scalars(
                    select(Reading.metric).where(Reading.device_id == self.device_id)
                )
            )

    def enqueue(self, action: str, payload: dict | None = None) -> int:
        with self.app.app_context():
            command = enqueue_command(None, self.device_id, action, payload)
            db.session.commit()
            return command.id

    def command(self, command_id: int) -> Command:
        with self.app.app_context():
            command = db.session.get(Command, command_id)
            db.session.expunge(command)
            return command

    def finished(self, command_id: int) -> Command | None:
        command = self.command(command_id)
        return command if command.status.value in ("succeeded", "failed") else None

    def device(self) -> Device:
        with self.app.app_context():
            device = db.session.get(Device, self.device_id)
            db.session.expunge(device)
            return device


@pytest.fixture
def portal(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret-key",
            "DATABASE_URL": "sqlite:///" + str(tmp_path / "portal.sqlite3"),
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
            "RATELIMIT_STORAGE_URI": "memory://",
            "COMMAND_LEASE_SECONDS": LEASE_SECONDS,
        }
    )
    with app.app_context():
        db.create_all()
        owner = create_user(None, "oscar", "correct horse battery", Role.operator)
        device, token = create_device(None, "agent-board", owner=owner)
        db.session.commit()
        device_id = device.id
    server = LiveServer(app)
    server.start()
    yield Portal(app, server, device_id, token)
    server.stop()
    with app.app_context():
        db.engine.dispose()


class CountingSource:
    """Readings ``count`` = 0, 1, 2, … one per call, ``total`` in all."""

    def __init__(self, total: int) -> None:
        self.total, self.sent = total, 0

    def __call__(self) -> list[dict]:
        if self.sent >= self.total:
            return []
        self.sent += 1
        return [{"metric": "count", "value": self.sent - 1}]


def make_agent(
    portal: Portal, state_dir, source=None, handler=None, token=None, **options
) -> Agent:
    options = {"interval": 0.05, "backoff": Backoff(base=0.05, cap=0.3), **options}
    return Agent(
        PortalClient(portal.url, token or portal.token, timeout=(1.0, 10.0)),
        ReadingQueue(str(state_dir), batch_size=options.pop("batch_size", 500)),
        CommandLedger(str(state_dir)),
        source or CountingSource(0),
        handler or (lambda action, payload: {"ran": action}),
        **options,
    )


@pytest.fixture
def run_agent(portal):
    """``run_agent(agent)`` runs it in a thread until the test ends."""
    running = []

    def start(agent: Agent) -> Agent:
        stop = threading.Event()
        thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
        thread.start()
        running.append((stop, thread, agent))
        return agent

    yield start
    for stop, thread, agent in running:
        stop.set()
        thread.join(15)
        agent.client.close()
        agent.queue.close()
        agent.ledger.close()
