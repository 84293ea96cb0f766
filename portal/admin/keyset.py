"""Keyset paging for the big lists (readings, commands, audit): "newer / older" links that name
the row a page starts from instead of a page number.

An OFFSET reads and throws away every row before its page (page 5,000 of the readings: a quarter
of a million rows); a key is a range on the index the order uses, so the millionth row costs
what the first does. A page is ordered by (sort column, id), both in the list's direction: the
id breaks ties, so the order is total and a key names one place in it. ``after=KEY`` is the page
of the rows that follow that row, ``before=KEY`` the page that precedes it (read in the opposite
order and turned around), ``before=end`` the last page. A key is the row's id, and unless the
list is sorted by id its sort value too (``arguments.key_text``); junk is flashed and ignored.

``page`` keeps working: alone it is Flask-Admin's OFFSET (links of old pages, small offsets);
beside a key it only numbers the rows shown (negative: pages counted back from the end). Sorting,
filters and search stay in every link; a new sort, filter or page size starts at the first page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import flash, request
from flask_babel import format_decimal
from flask_babel import gettext as _
from sqlalchemy import and_, or_

from portal.admin.arguments import MAX_OFFSET, ListKey, key_text, list_key, python_type

KEY_ARGS = ("after", "before")


@dataclass(frozen=True)
class ListOrder:
    """A list's order: ``column`` then the id, both descending or both ascending."""

    column: Any
    id_column: Any
    desc: bool

    @property
    def by_id(self) -> bool:
        return self.column is self.id_column

    @property
    def in_time(self) -> bool:
        """Whether the order is one of time (ids grow with time), so "newer" and "older" fit."""
        return self.by_id or python_type(self.column) is datetime

    def by(self, reverse: bool = False) -> list:
        descending = self.desc != reverse
        columns = [self.column] if self.by_id else [self.column, self.id_column]
        return [c.desc() if descending else c.asc() for c in columns]

    def beyond(self, key: ListKey) -> Any:
        """The rows that come after ``key`` (``key.after``), or before it, in this order."""
        smaller = key.after == self.desc
        ident, column, value = self.id_column, self.column, key.value
        if self.by_id:
            return ident < key.id if smaller else ident > key.id
        # The redundant "<=" gives the index a range to seek to; the OR breaks ties by id
        # (as services.readings.list_readings does).
        if smaller:
            return and_(column <= value, or_(column < value, ident < key.id))
        return and_(column >= value, or_(column > value, ident > key.id))

    def key(self, row: Any) -> str:
        return key_text(row.id, getattr(row, self.column.key), self.by_id)


class ListPage(list):
    """The rows of a keyset list page, and where the page lies: whether rows come before and
    after it, its number (``hint``: counted from the start, or back from the end when negative)
    and the key argument that leads to it (``at``: none for the first page)."""

    def __init__(
        self,
        rows: list,
        order: ListOrder,
        before: bool,
        after: bool,
        hint: int,
        at: dict[str, str] | None = None,
    ) -> None:
        super().__init__(rows)
        self.order, self.before, self.after, self.hint = order, before, after, hint
        self.at = at or {}


class RowCount(int):
    """A list's row count, shown as "10,000+" when counting stopped past the cap."""

    cap: int | None

    def __new__(cls, value: int, cap: int | None) -> RowCount:
        count = super().__new__(cls, value)
        count.cap = cap
        return count

    def __str__(self) -> str:
        if self.cap is not None and self > self.cap:
            return format_decimal(self.cap) + "+"
        return super().__str__()


@dataclass(frozen=True)
class Pager:
    position: str | None  # "Rows 51–100 of 10,000+", when the page knows its place
    links: list[tuple[str, str, str | None]]  # (testid suffix, label, url; None: disabled)


def with_args(url: str, **args: Any) -> str:
    """``url`` with these query arguments set (None: left out), the others kept in order."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in args]
    query += [(k, str(v)) for k, v in args.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


class KeysetListMixin:
    """Keyset paging for a SecureModelView with ``count_cap`` (``page_rows`` is its hook)."""

    model: Any
    page_size: int
    count_cap: int | None
    column_default_sort: Any

    def _get_list_extra_args(self):
        # The one Flask-Admin internal this needs: its sort, page-size, search and filter links
        # and forms copy every unknown argument, and a key means nothing in another order or
        # selection. (tests/admin/test_keyset_pages.py fails when this stops working.)
        view_args = super()._get_list_extra_args()  # type: ignore[misc]
        keyed = [view_args.extra_args.pop(name, None) for name in KEY_ARGS]
        if any(keyed):
            view_args.page = None  # beside a key, ``page`` only numbers the rows
        return view_args

    def list_order(self, sort_column: str | None, sort_desc: bool) -> ListOrder | None:
        """The order of the list, or None when it is not a column of the model."""
        if sort_column is None:
            default = self.column_default_sort
            if isinstance(default, tuple) and len(default) == 2:
                sort_column, sort_desc = default
            elif isinstance(default, str):
                sort_column, sort_desc = default, False
        column = getattr(self.model, sort_column, None) if isinstance(sort_column, str) else None
        if column is None or not hasattr(column, "type"):
            return None
        return ListOrder(column, self.model.id, bool(sort_desc))

    def page_rows(self, query, page, size, sort_column, sort_desc, filtered) -> list:
        order = self.list_order(sort_column, sort_desc)
        if order is None or not size:
            return super().page_rows(query, page, size, sort_column, sort_desc, filtered)  # type: ignore[misc]
        asked = self._requested_key(order)
        query = query.limit(None).offset(None)  # Flask-Admin's; each read sets its own
        if asked is None:
            rows, more = self._fetch(query, order, None, size, filtered, offset=page * size)
            return ListPage(rows, order, page > 0, more, page)
        at, key = asked
        rows, more = self._fetch(query, order, key, size, filtered)
        if key.after:
            return ListPage(rows, order, True, more, self._hint(size), at)
        if len(rows) < size:  # the start of the list: its first page, full
            rows, more = self._fetch(query, order, None, size, filtered)
            return ListPage(rows, order, False, more, 0)
        rows.reverse()
        return ListPage(rows, order, more, key.id is not None, self._hint(size), at)

    def _fetch(self, query, order, key: ListKey | None, size: int, filtered: bool, offset=0):
        """Up to ``size`` rows from ``key`` (or ``offset``) on; one more is read to learn
        whether another page follows."""
        backwards = key is not None and not key.after
        query = query.order_by(None).order_by(*order.by(reverse=backwards))
        if key is not None and key.id is not None:
            query = query.filter(order.beyond(key))
        query = query.limit(size + 1).offset(offset or None)
        rows = self.rows_by_ids(query, size + 1) if filtered else query.all()  # type: ignore[attr-defined]
        return rows[:size], len(rows) > size

    def _requested_key(self, order: ListOrder) -> tuple[dict[str, str], ListKey] | None:
        """The page's key argument and the key it names; None for none (junk is flashed)."""
        for name in KEY_ARGS:
            text = request.args.get(name)
            if text is None:
                continue
            try:
                return {name: text}, list_key(text, name == "after", order.column, order.id_column)
            except ValueError:
                flash(_("The page asked for does not fit this list: here is its start."), "error")
                return None
        return None

    def _hint(self, size: int) -> int:
        hint = request.args.get("page", 0, type=int)
        bound = MAX_OFFSET // size
        return max(-bound, min(hint, bound))

    # ---- the pager ------------------------------------------------------------------------
    def render(self, template, **kwargs):
        data = kwargs.get("data")
        if isinstance(data, ListPage) and "return_url" in kwargs:
            start = kwargs["return_url"]
            count = kwargs.get("count")
            if count is not None:
                kwargs["count"] = count = RowCount(count, self.count_cap)
            kwargs["pager"] = self._pager(start, data, count, kwargs["page_size"])
            kwargs["return_url"] = self._here(
                start, data
            )  # rows link back to this page, not the first
        return super().render(template, **kwargs)  # type: ignore[misc]

    @staticmethod
    def _here(start: str, data: ListPage) -> str:
        """This page's address (``start`` is the first page's, with the same sort and filters)."""
        if not data.at:
            return start
        return with_args(start, page=data.hint or None, **data.at)

    def _pager(self, start: str, data: ListPage, count: RowCount | None, size: int) -> Pager:
        order, hint = data.order, data.hint
        base = with_args(start, page=None, after=None, before=None)
        first_key = order.key(data[0]) if data else None
        last_key = order.key(data[-1]) if data else None
        previous_hint = ((hint - 1) or None) if hint else None
        next_hint = (hint + 1) or None
        urls = {
            "first": base if data.before else None,
            "previous": (
                with_args(base, page=previous_hint, before=first_key)
                if data.before and first_key
                else None
            ),
            "next": (
                with_args(base, page=next_hint, after=last_key) if data.after and last_key else None
            ),
            "last": with_args(base, page=-1, before="end") if data.after else None,
        }
        labels = self._labels(order)
        links = [(name, labels[name], urls[name]) for name in ("first", "previous", "next", "last")]
        return Pager(self._position(data, count, size), links)

    @staticmethod
    def _labels(order: ListOrder) -> dict[str, str]:
        if not order.in_time:
            first, previous, following, last = _("First"), _("Previous"), _("Next"), _("Last")
            return {"first": first, "previous": previous, "next": following, "last": last}
        newest, newer, older, oldest = _("Newest"), _("Newer"), _("Older"), _("Oldest")
        if order.desc:
            return {"first": newest, "previous": newer, "next": older, "last": oldest}
        return {"first": oldest, "previous": older, "next": newer, "last": newest}

    def _position(self, data: ListPage, count: RowCount | None, size: int) -> str | None:
        """Which rows the page shows: counted from the start, or (past a capped count, on a
        page reached from the end) back from the end."""
        if not data or count is None:
            return None
        total = str(count)
        capped = self.count_cap is not None and count > self.count_cap
        if data.hint >= 0:
            first = data.hint * size + 1
        elif not capped:
            first = count - (-data.hint) * size + 1
        else:
            first = (-data.hint - 1) * size + 1
            return _(
                "Rows %(first)s–%(last)s counted back from the end, of %(total)s",
                first=format_decimal(first),
                last=format_decimal(first + len(data) - 1),
                total=total,
            )
        if first < 1:
            return None
        return _(
            "Rows %(first)s–%(last)s of %(total)s",
            first=format_decimal(first),
            last=format_decimal(first + len(data) - 1),
            total=total,
        )
