"""``flask devices``: register boards from the shell."""

from __future__ import annotations

import json

import click
from flask.cli import with_appcontext

from portal.cli import domain_command
from portal.extensions import db
from portal.services.devices import create_device


@click.group(help="Manage devices.")
def devices() -> None:
    pass


@devices.command("create", help="Register a device; prints its id, name and token (once) as JSON.")
@click.argument("name")
@click.option("--owner", required=True, help="User name of the owner (admin or operator).")
@click.option(
    "--kind",
    default="generic",
    show_default=True,
    help="Board kind, e.g. raspberry_pi, esp32, arduino.",
)
@click.option("--location", default="")
@with_appcontext
@domain_command
def create(name: str, owner: str, kind: str, location: str) -> None:
    device, token = create_device(None, name, owner=owner, kind=kind, location=location)
    db.session.commit()  # stored before the token is shown
    click.echo(json.dumps({"id": device.id, "name": device.name, "token": token}))
