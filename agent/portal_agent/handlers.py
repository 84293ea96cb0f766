"""Command handlers: ``handler(action, payload) -> dict`` returns the result to report.

A handler reports failure by raising: ``CommandFailed("message")`` (or any other exception)
becomes ``{"status": "failed", "result": {"error": "message"}}``.
"""

from __future__ import annotations

import logging
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
    """A simulated relay: ``relay.on``, ``relay.off``, ``relay.toggle`` and ``relay.status``."""

    def __init__(self) -> None:
        self.on = False

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
        self.on = verbs[action]()
        log.info("relay is %s", "on" if self.on else "off")
        return {"relay": "on" if self.on else "off"}


HANDLERS: dict[str, Callable[[], Handler]] = {"log": LogHandler, "relay": RelayHandler}


def load_handler(spec: str) -> Handler:
    """A built-in handler by name (``log``, ``relay``) or ``module:callable``."""
    return load(spec, HANDLERS, "handler")
