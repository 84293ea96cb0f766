"""Keyset pagination: an opaque ``cursor`` holds the sort key of the last row shown.

A page is one indexed range scan however deep it is (no OFFSET). ``limit`` defaults to 50 and
stops at 500 (the query schema says so); a cursor that does not decode is 422.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from portal.api.schemas import MAX_BIG_ID, MAX_ID
from portal.services.errors import InvalidInput

T = TypeVar("T")
BAD_CURSOR = "Not a cursor this list gave out; start again without one."


def encode_cursor(*values: Any) -> str:
    raw = orjson.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(cursor: str) -> list:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = orjson.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidInput(fields={"cursor": BAD_CURSOR}) from None
    if not isinstance(values, list):
        raise InvalidInput(fields={"cursor": BAD_CURSOR})
    return values


def _id(value: Any, maximum: int = MAX_ID) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidInput(fields={"cursor": BAD_CURSOR})
    return value


def decode_id_cursor(cursor: str | None) -> int | None:
    """The id of the last row shown, for lists in id order."""
    if cursor is None:
        return None
    values = _decode(cursor)
    if len(values) != 1:
        raise InvalidInput(fields={"cursor": BAD_CURSOR})
    return _id(values[0])


def _instant(value: Any) -> datetime:
    if not isinstance(value, str):
        raise InvalidInput(fields={"cursor": BAD_CURSOR})
    try:
        at = datetime.fromisoformat(value)
        if at.tzinfo is None:
            raise ValueError("naive")
        return at.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(fields={"cursor": BAD_CURSOR}) from None


def decode_time_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    """``(time, id)`` of the last row shown, for lists newest first."""
    if cursor is None:
        return None
    values = _decode(cursor)
    if len(values) != 2:
        raise InvalidInput(fields={"cursor": BAD_CURSOR})
    return _instant(values[0]), _id(values[1], MAX_BIG_ID)


def decode_instant_cursor(cursor: str | None) -> datetime | None:
    """The time of the last row shown, for series oldest first keyed by time alone."""
    if cursor is None:
        return None
    values = _decode(cursor)
    if len(values) != 1:
        raise InvalidInput(fields={"cursor": BAD_CURSOR})
    return _instant(values[0])


def page(
    rows: Sequence[T], limit: int, key: Callable[[T], tuple]
) -> tuple[Sequence[T], str | None]:
    """Split ``limit + 1`` fetched rows into the page and the cursor to the next one."""
    if len(rows) <= limit:
        return rows, None
    shown = rows[:limit]
    return shown, encode_cursor(*key(shown[-1]))
