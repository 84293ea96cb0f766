"""Safe retries: the first answer to an ``Idempotency-Key`` request, replayed for 24 hours.

The edge acts, then ``remember``s the answer in the same transaction, so either both are
stored or neither. A repeat (or a racing twin) with the same key meets the unique index on
``(caller, key)``: it rolls back and ``check_replay`` gives the first answer.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import CursorResult, bindparam, delete, insert, select

from portal.extensions import db
from portal.models import IdempotencyRecord
from portal.services.errors import Conflict, InvalidInput

WINDOW = timedelta(hours=24)
KEY_RE = re.compile(r"^[\x20-\x7e]{1,128}$")
KEY_FIELD = "Idempotency-Key"


class Replay(NamedTuple):
    status: int
    body: Any


def validate_key(key: str) -> str:
    """Return the key, or raise InvalidInput: 1-128 printable ASCII characters."""
    if not KEY_RE.match(key):
        raise InvalidInput(fields={KEY_FIELD: "1 to 128 printable ASCII characters."})
    return key


def fingerprint(*parts: bytes | str) -> str:
    """A hash of what makes two requests "the same" (method, path, body)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8", "surrogateescape") if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()


# Prebuilt Core statements: a device sends a key with every batch, so this is a hot path.
_T = IdempotencyRecord.__table__
_FIND = select(
    _T.c.id, _T.c.request_hash, _T.c.status_code, _T.c.response_body, _T.c.created_at
).where(_T.c.caller == bindparam("caller"), _T.c.key == bindparam("key"))
_DROP = delete(_T).where(_T.c.id == bindparam("record_id"))
_ADD = insert(_T)


def check_replay(caller: str, key: str, request_hash: str, now: datetime) -> Replay | None:
    """The stored answer for this caller's key, or None when the request is new.

    Raises Conflict when the key was used within 24 h for a different request. A record older
    than 24 h is dropped here, so the key can be used again.
    """
    connection = db.session.connection()
    record = connection.execute(_FIND, {"caller": caller, "key": key}).first()
    if record is None:
        return None
    if record.created_at <= now - WINDOW:
        connection.execute(_DROP, {"record_id": record.id})
        return None
    return replay(record.request_hash, record.status_code, record.response_body, request_hash)


def replay(stored_hash: str, status: int, body: Any, request_hash: str) -> Replay:
    """The first answer for a repeat of the request that made it; Conflict for another one."""
    if stored_hash != request_hash:
        raise Conflict(
            "This Idempotency-Key was already used for a different request.",
            code="idempotency_key_reused",
        )
    return Replay(status, body)


_FIND_MANY = select(
    _T.c.id,
    _T.c.caller,
    _T.c.key,
    _T.c.request_hash,
    _T.c.status_code,
    _T.c.response_body,
    _T.c.created_at,
).where(
    _T.c.caller.in_(bindparam("callers", expanding=True)),
    _T.c.key.in_(bindparam("keys", expanding=True)),
)


def find_records(pairs: list[tuple[str, str]], now: datetime) -> dict[tuple[str, str], Any]:
    """The live records of these ``(caller, key)`` pairs, in one query (``check_replay`` for
    many requests at once); records past their window are dropped on the way."""
    if not pairs:
        return {}
    wanted = set(pairs)
    connection = db.session.connection()
    rows = connection.execute(
        _FIND_MANY,
        {"callers": sorted({c for c, _ in wanted}), "keys": sorted({k for _, k in wanted})},
    ).all()
    live: dict[tuple[str, str], Any] = {}
    for row in rows:
        if (row.caller, row.key) not in wanted:
            continue
        if row.created_at <= now - WINDOW:
            connection.execute(_DROP, {"record_id": row.id})
        else:
            live[(row.caller, row.key)] = row
    return live


def remember_many(answers: list[tuple[str, str, str, int, Any]], now: datetime) -> None:
    """``remember`` for many requests in one statement: ``(caller, key, request_hash, status,
    body)`` each."""
    if not answers:
        return
    db.session.connection().execute(
        _ADD,
        [
            {
                "caller": caller,
                "key": key,
                "request_hash": request_hash,
                "status_code": status,
                "response_body": body,
                "created_at": now,
            }
            for caller, key, request_hash, status, body in answers
        ],
    )


def remember(
    caller: str, key: str, request_hash: str, status: int, body: Any, now: datetime
) -> None:
    """Store the first answer in the current transaction (the edge commits with the action).

    On a race the INSERT or the commit raises IntegrityError: roll back and ``check_replay``.
    """
    db.session.connection().execute(
        _ADD,
        {
            "caller": caller,
            "key": key,
            "request_hash": request_hash,
            "status_code": status,
            "response_body": body,
            "created_at": now,
        },
    )


def purge_expired(now: datetime) -> int:
    """Delete records older than 24 h; return how many went."""
    # On the table, not the entity: an ORM delete would first configure every mapper, a
    # visible part of a `flask scheduler tick` process's time.
    # Session.execute is typed to return a Result; for a DELETE it is a CursorResult.
    result = cast(
        CursorResult[Any], db.session.execute(delete(_T).where(_T.c.created_at <= now - WINDOW))
    )
    return result.rowcount or 0
