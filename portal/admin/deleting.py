"""The admin's safe delete: a page that says what goes with each object before it goes.

As in Django's admin, the row's delete button and the "Delete" of a details or edit page open
``GET <view>/delete/?id=N``, and the list's bulk "Delete" opens the same page for the selected
rows (``?id=1&id=2…``): each object with what its delete removes (``services.deletes.preview``),
then "Yes, delete" (a POST of the same ids with the CSRF token) or "No, take me back". It works
without JavaScript. Nothing else deletes: Flask-Admin's own bulk "delete" action, which deleted
at once, is disallowed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import abort, flash, redirect, request
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.babel import ngettext as admin_ngettext
from flask_admin.helpers import get_redirect_target
from flask_babel import format_decimal
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from portal.services import deletes
from portal.services.errors import DomainError, Forbidden, NotFound

# Each kind of dependent by the name of its list (the menu's words), as Django's summary does:
# "Schedules: 3", "Readings: 10,000+".
KIND_NAMES = {
    "schedule": _l("Schedules"),
    "rule": _l("Rules"),
    "channel": _l("Channels"),
    "command": _l("Commands"),
    "reading": _l("Readings"),
    "alert": _l("Alerts"),
    "delivery": _l("Deliveries"),
    "token": _l("Tokens"),
}


def group_label(group: deletes.Removed) -> str:
    """``group`` counted in the user's language; a count that stopped at the cap gets a "+"."""
    count = format_decimal(group.count) + ("+" if group.more else "")
    return _("%(kind)s: %(count)s", kind=KIND_NAMES.get(group.kind, group.kind), count=count)


class SafeDeleteMixin:
    """``delete_view`` as a confirmation page (GET) and the delete itself (POST), and the
    list's "Delete" leading to that page. For SecureModelView, which supplies ``get_one``,
    ``selected``, ``delete_model`` and ``render``."""

    get_one: Callable[[Any], Any]
    selected: Callable[[Any], list]
    delete_model: Callable[[Any], bool]
    render: Callable[..., Any]
    get_url: Callable[..., str]
    can_delete: bool

    # Flask-Admin's bulk "delete" deleted the selected rows at once, with no page before it.
    action_disallowed_list = ["delete"]

    @expose("/delete/", methods=("GET", "POST"))
    def delete_view(self):
        return_url = get_redirect_target() or self.get_url(".index_view")
        rows = self._rows_to_delete(request.values.getlist("id"))
        if request.method == "POST":
            self._delete_rows(rows)
            return redirect(return_url)
        single = len(rows) == 1
        plans, refused = [], []
        for row in rows:
            try:
                plans.append((row, deletes.preview(current_user, row)))
            except (Forbidden, NotFound) as exc:
                if single:
                    abort(exc.status)  # out of reach 404, read-only 403, as everywhere
                refused.append((row, exc.message))
            except DomainError as exc:
                refused.append((row, exc.message))
        return self.render(
            "admin/delete_confirm.html",
            model=rows[0] if single else None,
            plans=plans,
            refused=refused,
            return_url=return_url,
            back_url=get_redirect_target("back") or return_url,
            group_label=group_label,
            cap=format_decimal(deletes.COUNT_CAP),
            capped=any(group.more for _, plan in plans for group in plan.dependents),
        )

    def _rows_to_delete(self, ids: list[str]) -> list:
        """The rows in reach: one id as ``get_one`` finds it (404 otherwise), several as
        ``selected`` does (the others left out); none at all is 404."""
        if len(ids) == 1:
            return [self.get_one(ids[0])]
        rows = self.selected(list(dict.fromkeys(ids)))
        if not rows:
            abort(404)
        return rows

    def _delete_rows(self, rows: list) -> None:
        """Delete each row through ``delete_model`` (which flashes a refusal) and say how many
        went, in Flask-Admin's words."""
        count = sum(1 for row in rows if self.delete_model(row))
        if count:
            flash(
                admin_ngettext(
                    "Record was successfully deleted.",
                    "%(count)s records were successfully deleted.",
                    count,
                    count=count,
                ),
                "success",
            )

    def may_delete(self, row: Any) -> bool:
        """Whether the user may delete ``row``: the "Delete" of its details and edit pages."""
        if not self.can_delete:
            return False
        try:
            deletes.check_delete(current_user, row)
        except (Forbidden, NotFound):
            return False
        except DomainError:  # it cannot go yet (a user who owns devices): the page says why
            pass
        return True

    # The list's "Delete" shows the page first.
    @action("review_delete", _l("Delete"))
    def action_review_delete(self, ids):
        chosen = [row.id for row in self.selected(ids)]
        if not chosen:
            return None
        url = get_redirect_target() or self.get_url(".index_view")
        return redirect(self.get_url(".delete_view", id=chosen, url=url))

    def is_action_allowed(self, name: str) -> bool:
        if name == "review_delete" and not self.can_delete:
            return False
        return super().is_action_allowed(name)  # type: ignore[misc]
