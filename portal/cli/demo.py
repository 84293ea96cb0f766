"""``flask demo``: a small fleet to click through; running it twice changes nothing."""

from __future__ import annotations

import json
import os
import random
from datetime import timedelta

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import func, select

from portal.cli import domain_command
from portal.extensions import db
from portal.models import Device, Role, User, utcnow
from portal.services.devices import create_device
from portal.services.readings import insert_rows
from portal.services.users import create_user, find_user

DEMO_DEVICES = [
    # name, kind, location, owner
    ("greenhouse-pi", "raspberry_pi", "Greenhouse", "admin"),
    ("shed-esp32", "esp32", "Garden shed", "demo-operator"),
    ("pond-pump", "esp32", "Pond", "demo-operator"),
    ("weather-arduino", "arduino", "Roof", "admin"),
]
TOKENS_FILE = "demo-tokens.json"


def _demo_owner(name: str) -> User:
    user = find_user(name)
    if user is None:
        if name == "admin":
            raise click.ClickException("Create the admin first: flask users ensure-admin")
        user = create_user(None, name, os.urandom(16).hex(), Role.operator)
    return user


def _seed_readings(device: Device, now) -> None:
    rng = random.Random(device.name)
    rows = []
    for i in range(24 * 12):
        at = now - timedelta(minutes=5 * i)
        hour = at.hour + at.minute / 60
        base = 14 + 6 * (1 - abs(hour - 14) / 14)
        rows.append(
            {
                "device_id": device.id,
                "metric": "temperature",
                "value": round(base + rng.uniform(-0.5, 0.5), 2),
                "recorded_at": at,
            }
        )
        rows.append(
            {
                "device_id": device.id,
                "metric": "humidity",
                "value": round(60 + rng.uniform(-8, 8), 1),
                "recorded_at": at,
            }
        )
    # Through the ingest's own store, so the roll-ups behind the longer charts have them too.
    insert_rows([(r["device_id"], r["metric"], r["value"], r["recorded_at"]) for r in rows])


@click.command(help="Load demo devices, readings and schedules (idempotent).")
@click.option("--if-empty", is_flag=True, help="Only when the database has no devices yet.")
@with_appcontext
@domain_command
def demo(if_empty: bool) -> None:
    if if_empty and db.session.scalar(select(func.count()).select_from(Device)):
        return
    now = utcnow()
    tokens: dict[str, str] = {}
    for name, kind, location, owner in DEMO_DEVICES:
        if db.session.execute(select(Device.id).where(Device.name == name)).first():
            continue
        device, token = create_device(
            None,
            name,
            owner=_demo_owner(owner),
            kind=kind,
            location=location,
            description=f"Demo {kind} board.",
        )
        tokens[name] = token
        _seed_readings(device, now)
    from portal.cli.demo_schedules import add_demo_schedules

    added = add_demo_schedules(now)
    db.session.commit()
    if tokens:
        path = os.path.join(current_app.instance_path, TOKENS_FILE)
        saved = {}
        if os.path.exists(path):
            with open(path) as fh:
                saved = json.load(fh)
        saved.update(tokens)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(saved, fh, indent=2)
        click.echo(f"Demo: {len(tokens)} devices, {added} schedules; device tokens in {path}")
    else:
        click.echo("Demo data already loaded.")
