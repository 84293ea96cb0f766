"""What the admin takes from a request, made safe before it reaches the database.

Page numbers, search words, row ids, filter values and form fields come from the query string
or a form. A value the database cannot take (an OFFSET beyond 64 bits or below zero, an id
outside its column's range, NUL in text or JSON, NaN in JSON, the name of no enum member, a LIKE
pattern PostgreSQL refuses, a search SQLite cannot parse) is refused here, before the query:
never caught as a database error after it ("Never a 500" in SECURITY.md). Flask-Admin then
ignores it: a bad filter value or search is flashed and left out, a bad id is not found, a page
past the end is an empty page, a bad form field gets an error.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from flask_admin.contrib.sqla.filters import FilterLike, FilterNotLike
from flask_admin.contrib.sqla.tools import parse_like_term
from flask_admin.model.filters import BaseFilter
from sqlalchemy import BigInteger, Integer, SmallInteger
from sqlalchemy.types import TypeEngine

MAX_OFFSET = 2**62  # past the end of any table, and far from overflowing OFFSET + LIMIT
# Each word of a search is one more condition: SQLite refuses a WHERE more than 1,000 levels
# deep, and its LIKE a pattern over 50,000 bytes.
MAX_SEARCH_WORDS = 20
MAX_SEARCH_LENGTH = 1_000
NUL = "\x00"  # PostgreSQL refuses it in text, so no stored text holds it


def list_page(page: int | None, page_size: int) -> int:
    """``page`` as the list query may use it: a negative page is the first, and a page whose
    OFFSET would pass ``MAX_OFFSET`` stays past the end (an empty page)."""
    if not page or page < 0:
        return 0
    return min(page, MAX_OFFSET // page_size) if page_size else 0


def search_words(search: str | None) -> str | None:
    """``search`` with each word once (the same rows match); ValueError when it is too long,
    has too many words or a word the database cannot search for."""
    if not search:
        return search
    words = dict.fromkeys(word for word in search.split(" ") if word)
    if len(words) > MAX_SEARCH_WORDS:
        raise ValueError("too many words")
    if sum(len(word) for word in words) > MAX_SEARCH_LENGTH:
        raise ValueError("too long")
    if not all(like_term_ok(word) for word in words):
        raise ValueError("not searchable")
    return " ".join(words)


def like_term_ok(term: str) -> bool:
    """Whether Flask-Admin's LIKE pattern for ``term`` is one the database takes: no NUL, and
    not ending in PostgreSQL's escape character ("=a\\" asks for exactly ``a\\``)."""
    pattern = parse_like_term(term)
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return not holds_nul(pattern) and trailing % 2 == 0


def holds_nul(value: Any) -> bool:
    return isinstance(value, str) and NUL in value


def storable_json(value: Any) -> bool:
    """Whether a JSON column keeps ``value`` on every database: PostgreSQL's jsonb refuses NUL
    (in a key or a string) and NaN or Infinity."""
    stack = [value]
    while stack:
        item = stack.pop()
        if holds_nul(item) or (isinstance(item, float) and not math.isfinite(item)):
            return False
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def int_bounds(column_type: TypeEngine) -> tuple[int, int] | None:
    """The integers a column of this type holds on every database (PostgreSQL's ranges)."""
    for kind, bits in ((BigInteger, 64), (SmallInteger, 16), (Integer, 32)):
        if isinstance(column_type, kind):
            return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return None


def fits(value: Any, column: Any) -> bool:
    """Whether the database can compare ``column`` with ``value`` (a filter's clean value)."""
    if isinstance(value, str):
        return not holds_nul(value)
    bounds = int_bounds(column.type)
    if bounds is None or isinstance(value, bool) or not isinstance(value, int):
        return True
    return bounds[0] <= value <= bounds[1]


def row_key(value: Any, column: Any) -> int | None:
    """The integer id that ``value`` (from a URL or a form) names, or None when it is no
    integer ``column`` can hold."""
    try:
        key = int(value)
    except (TypeError, ValueError):  # ValueError also for more than 4,300 digits
        return None
    return key if fits(key, column) and not isinstance(value, bool) else None


def row_keys(values: Iterable[Any], column: Any) -> list[int]:
    """The ids among ``values`` that ``column`` can hold; the others are left out."""
    keys = (row_key(value, column) for value in values)
    return [key for key in keys if key is not None]


class RefusesJunk(BaseFilter):
    """A filter whose ``validate`` also refuses what the database cannot compare."""

    def validate(self, value: Any) -> bool:
        try:
            if not super().validate(value):
                return False
            clean = self.clean(value)
        except (KeyError, ValueError, OverflowError):  # an unknown enum name is a KeyError
            return False
        if isinstance(self, FilterLike | FilterNotLike) and not like_term_ok(value):
            return False
        items = clean if isinstance(clean, list) else [clean]  # "in list" filters give lists
        return all(fits(item, self.column) for item in items)


@cache
def refusing_junk(filter_class: type[BaseFilter]) -> type[BaseFilter]:
    return type(filter_class.__name__, (RefusesJunk, filter_class), {})


def with_refusing_filters(converter: type) -> type:
    """Class decorator for a Flask-Admin filter converter: each family of filters it makes
    (``int_filters``, ``enum``, ...) refuses junk values (``RefusesJunk``)."""
    for name in dir(converter):
        family = getattr(converter, name)
        if isinstance(family, tuple) and family and all(_is_filter(item) for item in family):
            setattr(converter, name, tuple(refusing_junk(item) for item in family))
    return converter


def _is_filter(item: Any) -> bool:
    return isinstance(item, type) and issubclass(item, BaseFilter)


def unsafe_return_url(values: Iterable[str]) -> bool:
    """Whether a ``url`` argument (where Flask-Admin returns after a form or action) holds a
    control character: it would become a ``Location`` header, which may not hold one."""
    return any(not ch.isprintable() for value in values for ch in value)


# ---- the key of a keyset page (portal/admin/keyset.py) -----------------------------------------
LIST_END = "end"  # ``before=end``: the page at the end of the list


@dataclass(frozen=True)
class ListKey:
    """Where a keyset page starts: the rows after (or before) the row of this id and sort value
    in the list's order; with no id, the rows before the end (the last page)."""

    after: bool
    id: int | None = None
    value: Any = None


def list_key(text: str, after: bool, sort_column: Any, id_column: Any) -> ListKey:
    """The key ``text`` (an ``after`` or ``before`` URL argument) names: ``ID`` when the list is
    sorted by id, else ``ID:VALUE`` (the row's id, then its sort value as ``key_text`` writes it).
    ValueError when it is no key of this sort column: a value the database could not compare
    is refused here, like a junk filter value."""
    if not after and text == LIST_END:
        return ListKey(after=False)
    by_id = sort_column is id_column
    head, sep, tail = text.partition(":")
    key = row_key(head, id_column)
    if key is None or (by_id and sep) or (not by_id and not sep):
        raise ValueError("not a key of this list")
    return ListKey(after, key, key if by_id else sort_value(tail, sort_column))


def sort_value(text: str, column: Any) -> Any:
    """``text`` as a value of ``column`` (the inverse of ``key_text``); ValueError if none."""
    kind = python_type(column)
    if issubclass(kind, enum.Enum):
        return kind(text)
    if kind is datetime:
        try:
            value = datetime.fromisoformat(text)
            # Naive: taken as UTC (astimezone alone would take the server's zone).
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        except OverflowError:  # a zone that moves year 1 back past the first instant
            raise ValueError("no instant") from None
    if kind is float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return value
    if kind is int:
        number = row_key(text, column)
        if number is None:
            raise ValueError("not an integer of this column")
        return number
    if kind is str and not holds_nul(text):
        return text
    raise ValueError("not a value of this column")


def python_type(column: Any) -> type:
    """The Python type of ``column``'s values (a TypeDecorator's is its underlying type's)."""
    return getattr(column.type, "impl_instance", column.type).python_type


def key_text(row_id: int, value: Any, by_id: bool) -> str:
    """A row's key as ``list_key`` reads it (datetimes in UTC, floats exactly)."""
    if by_id:
        return str(row_id)
    if isinstance(value, enum.Enum):
        value = value.value
    elif isinstance(value, datetime):
        value = value.astimezone(UTC).isoformat()
    elif isinstance(value, float):
        value = repr(value)
    return f"{row_id}:{value}"
