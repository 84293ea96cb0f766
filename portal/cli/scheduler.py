"""``flask scheduler``: one pass (``tick``) or passes until stopped (``run``)."""

from __future__ import annotations

import logging

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from portal.extensions import db
from portal.scheduling import runner


@click.group(help="Fire due schedules.")
def scheduler() -> None:
    pass


@scheduler.command("tick", help="Run one pass; prints how many commands it created.")
@with_appcontext
def tick() -> None:
    try:
        created = runner.tick()
    except SQLAlchemyError as exc:
        db.session.rollback()
        raise click.ClickException(
            f"The pass failed: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
        ) from None
    click.echo(created)


@scheduler.command("run", help="Run passes until SIGTERM or SIGINT (Ctrl-C).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Longest sleep between passes, in seconds [default: SCHEDULER_INTERVAL_SECONDS, 10].",
)
@with_appcontext
def run(interval: float | None) -> None:
    if interval is None:
        interval = float(current_app.config.get("SCHEDULER_INTERVAL_SECONDS", 10))
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    click.echo(
        f"Scheduler running (passes at most {interval:g} s apart); SIGTERM or Ctrl-C stops it.",
        err=True,
    )
    runner.run(interval)
    click.echo("Scheduler stopped.", err=True)
