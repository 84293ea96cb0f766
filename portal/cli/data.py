"""``flask data``: how much data there is (``size``), and deleting what is past its retention
(``purge``), with the scheduler pass's own service."""

from __future__ import annotations

import math
import time

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from portal.extensions import db
from portal.models import utcnow
from portal.services import retention


@click.group(help="Readings, commands and audit entries: their size and retention.")
def data() -> None:
    pass


def _policy() -> retention.Policy:
    return retention.Policy.from_config(current_app.config)


def _failed(exc: SQLAlchemyError) -> click.ClickException:
    db.session.rollback()
    return click.ClickException(f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}")


@data.command("purge", help="Delete what is older than its retention, in short steps.")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@with_appcontext
def purge(dry_run: bool) -> None:
    now = utcnow()
    started = time.monotonic()
    try:
        if dry_run:
            found = retention.count_expired(now, _policy())
        else:
            found = retention.purge(now, _policy(), budget_seconds=math.inf)
    except SQLAlchemyError as exc:
        raise _failed(exc) from None
    verb = "Would delete" if dry_run else "Deleted"
    click.echo(
        f"{verb} {found.readings} reading(s), {found.commands} ended command(s), "
        f"{found.audit} audit entries and {found.rollups} roll-up(s) "
        f"({time.monotonic() - started:.1f} s)."
    )


@data.command("size", help="Rows per table, the oldest day, and how long each is kept.")
@with_appcontext
def size() -> None:
    policy = _policy()
    kept = {
        "readings": policy.readings_days,
        "commands": policy.commands_days,
        "audit_events": policy.audit_days,
        "reading_rollups_hourly": policy.rollups_days,
        "reading_rollups_daily": policy.rollups_days,
    }
    try:
        sizes = retention.data_size()
        own = retention.data_summary(policy).own_retention
    except SQLAlchemyError as exc:
        raise _failed(exc) from None
    click.echo(f"{'table':<24}{'rows':>14}  {'oldest day':<12}kept")
    for table in sizes:
        oldest = table.oldest_at.date().isoformat() if table.oldest_at else "-"
        days = kept[table.name]
        note = f"{days} days" if days else "forever"
        if table.name == "readings" and own:
            note += f" ({own} device(s) have their own)"
        elif table.name == "commands":
            note += " once ended"
        click.echo(f"{table.name:<24}{table.rows:>14,}  {oldest:<12}{note}")
