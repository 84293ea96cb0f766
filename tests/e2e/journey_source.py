"""A reading source for the rules journey: the readings the test wrote to the file named by
``JOURNEY_READINGS`` (a JSON list of ``{"metric", "value", "ts"}``), each handed out once."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def scripted() -> list[dict[str, Any]]:
    path = Path(os.environ["JOURNEY_READINGS"])
    if not path.exists():
        return []
    readings = json.loads(path.read_text())
    path.unlink()
    return list(readings)
