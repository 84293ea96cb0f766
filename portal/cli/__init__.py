"""Click groups: ``flask users``, ``flask devices``, ``flask scheduler``, ``flask mqtt``,
``flask notifications``, ``flask data``, ``flask demo``."""

from __future__ import annotations

import functools

import click
from flask import Flask

from portal.extensions import db
from portal.services import audit
from portal.services.errors import DomainError


def register(app: Flask) -> None:
    from portal.cli.data import data
    from portal.cli.demo import demo
    from portal.cli.devices import devices
    from portal.cli.mqtt import mqtt
    from portal.cli.notifications import notifications_group
    from portal.cli.scheduler import scheduler
    from portal.cli.users import users

    app.cli.add_command(users)
    app.cli.add_command(devices)
    app.cli.add_command(demo)
    app.cli.add_command(scheduler)
    app.cli.add_command(mqtt)
    app.cli.add_command(notifications_group, "notifications")
    app.cli.add_command(data)


def domain_command(func):
    """Run a CLI command as one transaction; a domain error is one line and exit 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        audit.set_origin("cli", "local")
        try:
            result = func(*args, **kwargs)
            db.session.commit()
            return result
        except DomainError as exc:
            db.session.rollback()
            message = exc.message
            if exc.fields:
                message += " (" + "; ".join(f"{k}: {v}" for k, v in exc.fields.items()) + ")"
            raise click.ClickException(message) from None

    return wrapper
