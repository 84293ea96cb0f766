"""``flask mqtt``: run the bridge, or bring the broker's device logins in step once."""

from __future__ import annotations

import logging
import time

import click
from flask import current_app
from flask.cli import with_appcontext

from portal.extensions import db
from portal.mqtt import bridge, dynsec
from portal.mqtt.connection import MQTT_OFF, bridge_client_id
from portal.services import mqtt_access
from portal.services.mqtt_access import BrokerError


@click.group(help="Devices over MQTT (PORTAL_MQTT_URL): the bridge and the broker's logins.")
def mqtt() -> None:
    pass


def _require_mqtt() -> None:
    if not current_app.config.get("MQTT_URL"):
        raise click.ClickException(MQTT_OFF)


@mqtt.command("run", help="Run the bridge until SIGTERM or SIGINT (Ctrl-C).")
@click.option(
    "--client-id",
    default=None,
    help="The bridge's MQTT client id [default: PORTAL_MQTT_CLIENT_ID, portal-bridge-<host>].",
)
@with_appcontext
def run(client_id: str | None) -> None:
    _require_mqtt()
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    client_id = client_id or bridge_client_id(current_app.config)
    click.echo(
        f"MQTT bridge {client_id} for {current_app.config['MQTT_URL']}; "
        "SIGTERM or Ctrl-C stops it.",
        err=True,
    )
    bridge.run(current_app._get_current_object(), client_id)  # type: ignore[attr-defined]
    click.echo("MQTT bridge stopped.", err=True)


@mqtt.command("sync", help="Bring the broker's device logins in step with the portal, once.")
@with_appcontext
def sync() -> None:
    _require_mqtt()
    config = current_app.config
    prefix = config["MQTT_TOPIC_PREFIX"]
    try:
        with dynsec.connect(config) as broker:
            ready = mqtt_access.ensure_bridge_role(broker, prefix, config["MQTT_USERNAME"] or "")
        if not ready:
            time.sleep(0.5)  # Mosquitto dropped the connection whose login got a role
        with dynsec.connect(config) as broker:
            done = 0
            while mqtt_access.has_changes():
                step = mqtt_access.apply_changes(broker, prefix)
                if not step:
                    break
                done += step
            orphans, missing = mqtt_access.unknown_logins(broker)
            for name in orphans:
                mqtt_access.forget_login(broker, name, prefix)
    except BrokerError as exc:
        db.session.rollback()
        raise click.ClickException(f"The broker's logins are not in step: {exc}") from None
    click.echo(
        f"{done} device(s) brought in step; {len(orphans)} login(s) of deleted devices removed."
    )
    if missing:
        ids = ", ".join(str(i) for i in missing)
        click.echo(
            f"No MQTT login yet for device(s) {ids}: rotate a device's token to give it one.",
        )
