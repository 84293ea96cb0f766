"""What the agent has run: command ids with their results, so no command ever runs twice.

A command is written down as ``running`` before its handler starts. If the agent dies mid-run,
the command is not run again on redelivery; it is reported failed ("interrupted") instead, since
running an action twice (open a valve, dispense food) can be worse than not finishing it once.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from portal_agent.queue import connect

KEEP_SECONDS = 40 * 24 * 3600  # longer than any command can live (30 days) plus its leases

SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY,
    action TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    reported INTEGER NOT NULL DEFAULT 0,
    started_at REAL NOT NULL
);
"""
INTERRUPTED = {"error": "interrupted: the agent stopped while running this command; not run again"}


@dataclass(frozen=True)
class Outcome:
    command_id: int
    status: str  # "succeeded" | "failed"
    result: dict[str, Any]


class CommandLedger:
    """Executed command ids and their outcomes, kept in the state directory."""

    def __init__(self, state_dir: str) -> None:
        os.makedirs(state_dir, exist_ok=True)
        self._conn = connect(os.path.join(state_dir, "commands.sqlite3"))
        self._conn.executescript(SCHEMA)
        self._conn.execute(
            "DELETE FROM commands WHERE reported = 1 AND started_at < ?",
            (time.time() - KEEP_SECONDS,),
        )

    def begin(self, command_id: int, action: str) -> bool:
        """Claim a command before running it; False when it was seen before."""
        cursor = self._conn.execute(
            "INSERT OR IGNORE INTO commands (id, action, status, started_at)"
            " VALUES (?, ?, 'running', ?)",
            (command_id, action, time.time()),
        )
        return cursor.rowcount == 1

    def finish(self, outcome: Outcome) -> None:
        self._conn.execute(
            "UPDATE commands SET status = ?, result = ? WHERE id = ?",
            (outcome.status, json.dumps(outcome.result), outcome.command_id),
        )

    def outcome(self, command_id: int) -> Outcome | None:
        """The stored outcome; a run cut short by a crash counts as failed."""
        row = self._conn.execute(
            "SELECT status, result FROM commands WHERE id = ?", (command_id,)
        ).fetchone()
        if row is None:
            return None
        status, result = row
        if status == "running":
            return Outcome(command_id, "failed", INTERRUPTED)
        return Outcome(command_id, status, json.loads(result))

    def mark_reported(self, command_id: int) -> None:
        self._conn.execute("UPDATE commands SET reported = 1 WHERE id = ?", (command_id,))

    def unreported(self) -> list[Outcome]:
        """Outcomes the server has not acknowledged yet, oldest first."""
        ids = [
            row[0]
            for row in self._conn.execute(
                "SELECT id FROM commands WHERE reported = 0 ORDER BY started_at, id"
            )
        ]
        return [outcome for command_id in ids if (outcome := self.outcome(command_id)) is not None]

    def close(self) -> None:
        self._conn.close()
