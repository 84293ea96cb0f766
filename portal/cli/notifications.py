"""``flask notifications deliver``: one delivery pass of the notification outbox."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from portal.extensions import db
from portal.services import notifications


@click.group(help="Notifications: the outbox of webhook and email deliveries.")
def notifications_group() -> None:
    pass


@notifications_group.command(
    "deliver", help="Send the deliveries that are due, once; prints what became of them."
)
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=notifications.BATCH_SIZE,
    show_default=True,
    help="At most this many deliveries.",
)
@with_appcontext
def deliver(limit: int) -> None:
    try:
        result = notifications.deliver_due(limit=limit)
    except SQLAlchemyError as exc:
        db.session.rollback()
        raise click.ClickException(
            f"The pass failed: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
        ) from None
    click.echo(
        f"delivered {result.delivered}, retrying {result.retrying}, "
        f"given up {result.given_up}, postponed {result.postponed}"
    )
