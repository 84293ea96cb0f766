"""Reading sources: callables that return a list of ``{"metric", "value"[, "ts"]}`` dicts.

A source is called once per interval. Readings without ``ts`` are stamped when buffered.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from portal_agent.plugins import load

# ``source()``: the readings taken now; the buffer checks each one and skips bad ones.
Source = Callable[[], Any]


class SimulatedSensor:
    """Temperature (°C) and relative humidity (%) drifting in a bounded random walk."""

    def __init__(
        self, seed: int | None = None, temperature: float = 21.0, humidity: float = 50.0
    ) -> None:
        self._rng = random.Random(seed)
        self.temperature, self.humidity = temperature, humidity

    def __call__(self) -> list[dict[str, Any]]:
        self.temperature = _step(self._rng, self.temperature, 0.3, -10.0, 45.0)
        self.humidity = _step(self._rng, self.humidity, 1.0, 5.0, 95.0)
        return [
            {"metric": "temperature", "value": round(self.temperature, 2)},
            {"metric": "humidity", "value": round(self.humidity, 1)},
        ]


def _step(rng: random.Random, value: float, stride: float, low: float, high: float) -> float:
    return min(high, max(low, value + rng.uniform(-stride, stride)))


SOURCES: dict[str, Callable[[], Source]] = {"simulated": SimulatedSensor}


def load_source(spec: str) -> Source:
    """A built-in source by name (``simulated``) or ``module:callable``."""
    return load(spec, SOURCES, "source")
