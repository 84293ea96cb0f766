"""Column types shared by the models: UTC instants and JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC instant on every database.

    PostgreSQL keeps ``timestamptz``; SQLite has no zone, so UTC is stored naive and the zone is
    put back on load. A naive value (e.g. from a list filter) is taken as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class _JSON(TypeDecorator[Any]):
    """JSONB on PostgreSQL, JSON text elsewhere.

    The PostgreSQL dialect is imported only when a PostgreSQL database is used: importing it
    costs a SQLite process (``flask scheduler tick``, say) about 45 ms of start-up.
    """

    impl = JSON
    cache_ok = True
    should_evaluate_none = True  # as JSON: None is stored as JSON null, not skipped

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


JSONType = _JSON()

# SQLite only aliases rowid for INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigIntKey = BigInteger().with_variant(Integer(), "sqlite")
