"""Exponential back-off with jitter, capped: how long to wait before trying the server again."""

from __future__ import annotations

import random


class Backoff:
    """Delays of ``base * factor**n`` seconds (n = failures so far), capped at ``cap``.

    Each delay is drawn from the upper half of its step ("equal jitter"), so a fleet that lost the
    same server at the same moment does not come back in lock-step, yet no retry is immediate.
    """

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 60.0,
        factor: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if base <= 0 or cap < base or factor < 1:
            raise ValueError("need 0 < base <= cap and factor >= 1")
        self.base, self.cap, self.factor = base, cap, factor
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """Count one more failure and return the seconds to wait before the next try."""
        step = min(self.cap, self.base * self.factor ** min(self.failures, 64))
        self.failures += 1
        return self._rng.uniform(step / 2, step)

    def reset(self) -> None:
        self.failures = 0
