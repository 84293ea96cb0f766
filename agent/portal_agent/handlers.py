"""Command handlers: ``handler(action, payload) -> dict`` returns the result to report.

A handler reports failure by raising: ``CommandFailed("message")`` (or any other exception)
becomes ``{"status": "failed", "result": {"error": "message"}}``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from portal_agent.plugins import load

log = logging.getLogger(__name__)

# ``handler(action, payload)``: a dict result is reported as it is, any other value is wrapped.
Handler = Callable[[str, dict[str, Any]], Any]


class CommandFailed(Exception):
    """The command was understood but could not be done; the message goes to the server."""


class LogHandler:
    """Logs every command and reports it done: a safe default for trying the portal out."""

    def __call__(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        log.info("command %s %s", action, payload)
        return {"logged": action}


class RelayHandler:
    """A simulated relay: ``relay.on``, ``relay.off``, ``relay.toggle`` and ``relay.status``.

    ``relay.on`` (and a toggle that turns it on) with ``{"seconds": N}`` (0 < N <= 86400)
    switches it off again after N seconds, as a pump or a fan timer does; any later command
    cancels that timer. The result says when: ``{"relay": "on", "off_in": N}``.
    """

    MAX_SECONDS = 86400.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.on = False
        self._clock = clock
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._off_at: float | None = None

    def __call__(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        verbs: dict[str, Callable[[], bool]] = {
            "relay.on": lambda: True,
            "relay.off": lambda: False,
            "relay.toggle": lambda: not self.on,
            "relay.status": lambda: self.on,
        }
        if action not in verbs:
            raise CommandFailed(
                f"unknown action {action!r}; this relay knows {', '.join(sorted(verbs))}"
            )
        seconds = self._seconds(payload)
        with self._lock:
            if action == "relay.status":
                return self._state()
            self._cancel()
            self.on = verbs[action]()
            if self.on and seconds is not None:
                self._off_at = self._clock() + seconds
                self._timer = threading.Timer(seconds, self._switch_off)
                self._timer.daemon = True
                self._timer.start()
            log.info(
                "relay is %s%s",
                "on" if self.on else "off",
                f" for {seconds:g} s" if self.on and seconds is not None else "",
            )
            return self._state()

    def _seconds(self, payload: dict[str, Any]) -> float | None:
        value = (payload or {}).get("seconds")
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0 < value <= self.MAX_SECONDS
        ):
            raise CommandFailed(
                f"seconds must be a number above 0 and at most {self.MAX_SECONDS:g}"
            )
        return float(value)

    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"relay": "on" if self.on else "off"}
        if self.on and self._off_at is not None:
            state["off_in"] = round(max(0.0, self._off_at - self._clock()), 1)
        return state

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._off_at = None

    def _switch_off(self) -> None:
        with self._lock:
            self.on, self._timer, self._off_at = False, None, None
        log.info("relay is off (its time ran out)")


HANDLERS: dict[str, Callable[[], Handler]] = {"log": LogHandler, "relay": RelayHandler}


def load_handler(spec: str) -> Handler:
    """A built-in handler by name (``log``, ``relay``) or ``module:callable``."""
    return load(spec, HANDLERS, "handler")
