"""The agent's loop: sample the source, then sync with the portal, backing off while it is away.

One sync: heartbeat (when due), upload buffered batches, poll commands and run each once,
then re-send results the server has not acknowledged yet.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from portal_agent.backoff import Backoff
from portal_agent.client import PortalClient, Rejected, Unavailable
from portal_agent.handlers import CommandFailed, Handler
from portal_agent.ledger import CommandLedger, Outcome
from portal_agent.queue import ReadingQueue
from portal_agent.sources import Source

log = logging.getLogger(__name__)


class Agent:
    def __init__(
        self,
        client: PortalClient,
        queue: ReadingQueue,
        ledger: CommandLedger,
        source: Source,
        handler: Handler,
        *,
        interval: float = 10.0,
        heartbeat_seconds: float = 60.0,
        firmware: str | None = None,
        backoff: Backoff | None = None,
        poll_limit: int = 10,
        max_batches: int = 20,
    ) -> None:
        self.client, self.queue, self.ledger = client, queue, ledger
        self.source, self.handler = source, handler
        self.interval, self.heartbeat_seconds, self.firmware = interval, heartbeat_seconds, firmware
        self.backoff = backoff or Backoff(cap=max(60.0, interval))
        self.poll_limit, self.max_batches = poll_limit, max_batches
        self._last_heartbeat: float | None = None

    def run(self, stop: threading.Event) -> None:
        """Sample every ``interval`` and sync, until ``stop`` is set."""
        next_sample = next_sync = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_sample:
                self.sample()
                next_sample = now + self.interval
            if now >= next_sync:
                next_sync = time.monotonic() + self.try_sync()
            stop.wait(max(0.0, min(next_sample, next_sync) - time.monotonic()))

    def run_once(self) -> bool:
        """One sample and one sync; False when the portal could not be reached."""
        self.sample()
        self.try_sync()
        return self.backoff.failures == 0

    def try_sync(self) -> float:
        """Sync once; return the seconds to wait before the next sync."""
        try:
            self.sync()
        except Unavailable as exc:
            delay = self.backoff.next_delay()
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, 3600.0))
            log.warning(
                "portal unavailable (%s); %d readings buffered; retrying in %.1fs",
                exc,
                len(self.queue),
                delay,
            )
            return delay
        except Exception:  # the loop's boundary: a surprise answer must not end the agent
            delay = self.backoff.next_delay()
            log.exception("sync failed; retrying in %.1fs", delay)
            return delay
        if self.backoff.failures:
            log.info("portal reachable again")
        self.backoff.reset()
        return self.interval

    def sample(self) -> None:
        take_sample(self.source, self.queue)

    def sync(self) -> None:
        now = time.monotonic()
        if self._last_heartbeat is None or now - self._last_heartbeat >= self.heartbeat_seconds:
            self.client.heartbeat(self.firmware)
            self._last_heartbeat = now
        self.upload()
        for command in self.client.poll(self.poll_limit):
            self.handle(command)
        for outcome in self.ledger.unreported():
            self.report(outcome)

    def upload(self) -> None:
        for _ in range(self.max_batches):
            batch = self.queue.next_batch()
            if batch is None:
                return
            try:
                accepted = self.client.upload(batch.readings, batch.key)
                log.debug("uploaded %d readings (key %s)", accepted, batch.key)
            except Rejected as exc:
                log.error(
                    "portal refused a batch of %d readings for good, dropping it: %s %s",
                    len(batch.readings),
                    exc,
                    exc.body,
                )
            self.queue.ack(batch)

    def handle(self, command: dict[str, Any]) -> Outcome:
        """Run a command the first time its id is seen; afterwards re-send the stored result."""
        outcome = run_command(self.ledger, self.handler, command)
        self.report(outcome)
        return outcome

    def execute(self, command_id: int, action: str, payload: dict[str, Any]) -> Outcome:
        return execute(self.handler, command_id, action, payload)

    def report(self, outcome: Outcome) -> None:
        try:
            self.client.report(outcome.command_id, outcome.status, outcome.result)
        except Rejected as exc:
            log.warning("portal refused the result of command %d: %s", outcome.command_id, exc)
        self.ledger.mark_reported(outcome.command_id)

    def close(self) -> None:
        self.client.close()
        self.queue.close()
        self.ledger.close()


def take_sample(source: Source, queue: ReadingQueue) -> None:
    """Call the source once and buffer what it returns (a failing source is logged)."""
    try:
        readings = source()
    except Exception:  # user code: a flaky sensor must not stop the agent
        log.exception("source failed")
        return
    queue.put(readings or [])


def run_command(ledger: CommandLedger, handler: Handler, command: dict[str, Any]) -> Outcome:
    """The outcome of a command: run the first time its id is seen (claimed in the ledger
    before the handler starts), else the stored outcome, without running it again."""
    command_id, action = int(command["id"]), str(command.get("action", ""))
    if ledger.begin(command_id, action):
        outcome = execute(handler, command_id, action, command.get("payload") or {})
        ledger.finish(outcome)
        return outcome
    stored = ledger.outcome(command_id)
    # begin() found the command's row, and rows are only forgotten at start-up.
    assert stored is not None
    log.info("command %d was run before; re-sending its result", command_id)
    return stored


def execute(handler: Handler, command_id: int, action: str, payload: dict[str, Any]) -> Outcome:
    """Run the handler; its exception becomes a failed outcome, its return value a JSON object."""
    try:
        result = handler(action, payload)
    except CommandFailed as exc:
        return Outcome(command_id, "failed", {"error": str(exc)})
    except Exception as exc:  # user code: report the failure instead of dying
        log.exception("handler failed on command %d (%s)", command_id, action)
        return Outcome(command_id, "failed", {"error": f"{exc.__class__.__name__}: {exc}"})
    if not isinstance(result, dict):
        result = {} if result is None else {"value": result}
    return Outcome(command_id, "succeeded", json.loads(json.dumps(result, default=str)))
