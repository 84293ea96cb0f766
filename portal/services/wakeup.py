"""Waking the MQTT bridge when there is something to push (a command, a credential change).

On PostgreSQL a ``NOTIFY`` in the writing transaction reaches the bridge's ``LISTEN`` the moment
the transaction commits (and never when it rolls back). On SQLite the bridge watches the
highest command and change ids instead (``portal/mqtt/bridge.py``), so there is nothing to send.
"""

from __future__ import annotations

from portal.extensions import db

CHANNEL = "portal_mqtt"


def wake_bridge() -> None:
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_notify('{CHANNEL}', '')")
