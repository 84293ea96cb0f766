"""``flask mqtt run``: the bridge between the broker and the portal.

Threads:
- paho's network thread receives messages and puts them in ``inbox`` (device messages) or
  hands them to ``Dynsec`` (its answers). Nothing is acknowledged to the broker there.
- on PostgreSQL, a listener thread waits on ``LISTEN portal_mqtt`` and sets ``wake`` when a
  command or a credential change is committed; on SQLite the main loop watches the highest
  command and change ids instead.
- the main thread does the work: a batch of messages in one transaction, then the acks to the
  broker (only after the commit, so a bridge killed at any moment loses nothing: the broker
  hands unacknowledged messages out again), then the answers on ``down/acks``; commands for
  devices that are online over MQTT (claimed as a poll claims them, published after the
  commit); the broker's credentials; a heartbeat row for the dashboard.

Several bridges share the device topics through one MQTT 5 shared subscription, so each message
reaches one of them. Each bridge keeps a persistent session (its client id), so what arrives
while it is away waits for it at the broker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from flask import Flask
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from portal.api.errors import JSON_OPTIONS
from portal.extensions import db
from portal.models import BridgeBeat, Command, CommandStatus, Device, MqttCredentialChange, utcnow
from portal.mqtt import dynsec, handlers
from portal.mqtt.connection import make_client
from portal.scheduling.runner import DATABASE_DOWN, on_signals, reset_session
from portal.services import commands, mqtt_access
from portal.services.devices import DeviceRef
from portal.services.mqtt_access import BrokerError
from portal.services.wakeup import CHANNEL

log = logging.getLogger(__name__)

SHARE_GROUP = "portal-bridge"
BATCH = 200  # messages per transaction; also the broker's in-flight window for the bridge
SESSION_EXPIRY_SECONDS = 7 * 24 * 3600
SWEEP_SECONDS = 1.0  # leases, credential retries: looked at this often without a wake-up
BEAT_SECONDS = 5.0
WATCH_SECONDS = 0.05  # SQLite: how often the highest ids are read
LEAVE_SECONDS, QUIET_SECONDS = 10.0, 0.5  # stopping while other bridges run: see _leave
MAX_BACKOFF_SECONDS = 30.0
SHARED_SUBSCRIPTION, STATUS_SNAPSHOT = 1, 2


class _Spoilt(Exception):
    """A message raised something unexpected; the batch's transaction may be unusable."""


@dataclass
class Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    subscriptions: tuple[int, ...]
    session: int  # which connection it came on: an older one's messages come again
    at: float  # time.monotonic() on arrival


class Bridge:
    def __init__(self, app: Flask, client_id: str, stop: threading.Event | None = None) -> None:
        self.app = app
        config = app.config
        self.prefix: str = config["MQTT_TOPIC_PREFIX"]
        self.client_id = client_id
        self.max_bytes = int(config["MAX_CONTENT_LENGTH"])
        self.touch_seconds = int(config["TOKEN_TOUCH_SECONDS"])
        self.lease_seconds = int(config["COMMAND_LEASE_SECONDS"])
        self.max_attempts = int(config["COMMAND_MAX_ATTEMPTS"])
        self.stop = stop or threading.Event()
        self.wake = threading.Event()
        self.inbox: queue.Queue[Received | None] = queue.Queue()  # None: wake up
        self.session = 0
        self.connected = threading.Event()
        self.client, self.host, self.port = make_client(config, client_id, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = lambda _client, _userdata: log.warning(
            "cannot reach the broker at %s:%s; retrying", self.host, self.port
        )
        self.client.on_message = self._on_message
        self.dynsec = dynsec.Dynsec(self.client)
        self.started_at = utcnow()
        self.handled = 0
        self.last_message_at: datetime | None = None
        self.lag = 0.0
        self.bridge_role_ok = False
        self.credentials_after = 0.0  # time.monotonic() before which credentials wait
        self.credentials_backoff = 0.0
        self.pending: list[Received] = []  # the batch in hand, until it is committed

    # ---- paho's thread ---------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("the broker refused the bridge's login: %s", reason)
            return
        self.session += 1
        shared = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
        shared.SubscriptionIdentifier = SHARED_SUBSCRIPTION
        snapshot = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
        snapshot.SubscriptionIdentifier = STATUS_SNAPSHOT
        options = SubscribeOptions(qos=1)
        client.subscribe(dynsec.RESPONSE_TOPIC, qos=1)
        client.subscribe(
            f"$share/{SHARE_GROUP}/{self.prefix}/+/up/#", options=options, properties=shared
        )
        # Shared subscriptions get no retained messages; this one exists for the devices'
        # retained status when the bridge (re)connects. Live status comes through the shared one.
        client.subscribe(f"{self.prefix}/+/up/status", options=options, properties=snapshot)
        self.connected.set()
        self.bridge_role_ok = False
        with contextlib.suppress(OSError, AttributeError):  # answers and commands go out at once
            client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
        self.wake_up()
        log.info(
            "connected to the broker at %s:%s (session present: %s)",
            self.host,
            self.port,
            flags.session_present,
        )

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        if not self.stop.is_set():
            log.warning("lost the broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic.startswith("$CONTROL/"):
            self.dynsec.on_response(message.payload)
            client.ack(message.mid, message.qos)
            return
        ids = getattr(message.properties, "SubscriptionIdentifier", None) or []
        self.inbox.put(
            Received(
                message.topic,
                bytes(message.payload),
                message.mid,
                message.qos,
                bool(message.retain),
                tuple(ids) if isinstance(ids, list) else (ids,),
                self.session,
                time.monotonic(),
            )
        )

    # ---- the main thread -------------------------------------------------------------------

    def run(self) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
        properties.ReceiveMaximum = BATCH
        self.client.connect_async(
            self.host, self.port, keepalive=30, clean_start=False, properties=properties
        )
        self.client.loop_start()
        listener = self._start_listener()
        last_sweep = last_beat = 0.0
        watched: tuple[Any, ...] | None = None
        backoff = 1.0
        pending: list[Received] = []
        try:
            while not self.stop.is_set():
                try:
                    # Messages of an earlier connection come again on this one.
                    pending = [r for r in pending if r.session == self.session] or self._take()
                    self.pending = pending
                    if pending:
                        self._process(pending)  # empties it once all is committed
                    now = time.monotonic()
                    if listener is None and now - last_sweep >= WATCH_SECONDS:
                        seen = self._highest_ids()
                        if seen != watched:
                            watched = seen
                            self.wake.set()
                    if self.wake.is_set() or now - last_sweep >= SWEEP_SECONDS:
                        self.wake.clear()
                        last_sweep = now
                        if self.connected.is_set():
                            self._push_commands()
                            if now >= self.credentials_after:
                                self._apply_credentials()
                    if now - last_beat >= BEAT_SECONDS:
                        last_beat = now
                        self._beat()
                    backoff = 1.0
                except DATABASE_DOWN as exc:
                    reset_session()
                    log.warning(
                        "database unavailable (%s); retrying in %.0f s",
                        exc.__class__.__name__,
                        backoff,
                    )
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        finally:
            leaving = False
            with contextlib.suppress(Exception):
                # Not with a batch in hand (the database is away): ending the session would
                # throw its unacknowledged messages away.
                leaving = (
                    not self.pending
                    and self.connected.is_set()
                    and self._others_alive()
                    and self._leave()
                )
            goodbye: Properties | None = None
            if leaving:
                goodbye = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
                goodbye.SessionExpiryInterval = 0  # end the session: nothing waits for it
            self.client.disconnect(properties=goodbye)
            self.client.loop_stop()
            with contextlib.suppress(Exception):
                self._beat(connected=False)
            db.session.remove()

    def _others_alive(self) -> bool:
        """Whether another bridge beat (connected) within the last few beats."""
        table = BridgeBeat.__table__
        recent = utcnow() - timedelta(seconds=3 * BEAT_SECONDS)
        found = db.session.execute(
            select(table.c.id).where(
                table.c.client_id != self.client_id,
                table.c.connected.is_(True),
                table.c.beat_at >= recent,
            )
        ).first()
        db.session.commit()
        return found is not None

    def _leave(self) -> bool:
        """Leave the shared subscription and handle what is still on its way, so that a bridge
        stopped for good strands nothing: Mosquitto deals a shared subscription's messages to
        its stopped members too, and keeps them until they come back. Only when another bridge
        runs; the last one keeps its session, and what arrives meanwhile waits for it."""
        self.client.unsubscribe(f"$share/{SHARE_GROUP}/{self.prefix}/+/up/#")
        quiet_since = time.monotonic()
        deadline = quiet_since + LEAVE_SECONDS
        while time.monotonic() < deadline and time.monotonic() - quiet_since < QUIET_SECONDS:
            batch = self._take()
            if batch:
                self._process(batch)
                quiet_since = time.monotonic()
        log.info("left the shared subscription; the other bridges take the messages")
        return True

    def _take(self) -> list[Received]:
        """Up to BATCH messages of the current connection, waiting a moment for the first
        (cut short by ``wake_up``)."""
        batch: list[Received] = []
        try:
            first = self.inbox.get(timeout=WATCH_SECONDS)
            if first is not None:
                batch.append(first)
                while len(batch) < BATCH:
                    item = self.inbox.get_nowait()
                    if item is not None:
                        batch.append(item)
        except queue.Empty:
            pass
        # A message of an earlier connection is not acknowledged on this one: the broker sends
        # it again (flagged DUP), so it is dropped here rather than handled twice.
        return [r for r in batch if r.session == self.session]

    def wake_up(self) -> None:
        """Something is to be pushed (a command, a credential change): look now."""
        self.wake.set()
        self.inbox.put(None)

    def _process(self, batch: list[Received]) -> None:
        """Handle a batch in one transaction, then acknowledge it; finished messages leave
        ``batch``, so after a database error only unfinished ones are tried again.

        When one message spoils the transaction (a unique-key clash: two bridges racing on one
        idempotency key; or an unexpected error, which may leave it unusable) the batch is
        rolled back and handled again one message per transaction, so only the culprit is
        dropped (logged, acknowledged, not stored)."""
        try:
            outcomes = self._handle_all(batch)
        except (IntegrityError, _Spoilt):
            db.session.rollback()
            while batch:
                self._finish([batch[0]], [self._handle_alone(batch[0])])
                del batch[0]
            return
        self._finish(batch, outcomes)
        batch.clear()

    def _finish(self, batch: list[Received], outcomes: list[handlers.Outcome]) -> None:
        """After the commit: acknowledge to the broker, answer the devices (no database)."""
        committed = time.monotonic()
        for received, outcome in zip(batch, outcomes, strict=True):
            if received.session == self.session:
                self.client.ack(received.mid, received.qos)
            if outcome.ack is not None and outcome.device_id is not None:
                topic = f"{mqtt_access.topic_root(self.prefix, outcome.device_id)}/down/acks"
                self.client.publish(topic, orjson.dumps(outcome.ack, option=JSON_OPTIONS), qos=1)
            if outcome.online:
                self.wake.set()  # its queued commands go out in this loop's sweep
            self.lag = max(self.lag, committed - received.at)
        self.handled += len(batch)
        self.last_message_at = utcnow()

    def _handle_all(self, batch: list[Received]) -> list[handlers.Outcome]:
        # A live status also comes through the shared subscription: handled there, so the
        # status subscription's copy counts only when it is the retained one.
        wanted = [
            r.retain or SHARED_SUBSCRIPTION in r.subscriptions or not r.subscriptions for r in batch
        ]
        try:
            handled = handlers.handle_batch(
                self.prefix,
                [(r.topic, r.payload) for r, want in zip(batch, wanted, strict=True) if want],
                utcnow(),
                max_bytes=self.max_bytes,
                touch_seconds=self.touch_seconds,
            )
        except (IntegrityError, *DATABASE_DOWN):
            raise
        except Exception as exc:  # a bug must not stop the bridge
            raise _Spoilt(", ".join(sorted({r.topic for r in batch}))[:500]) from exc
        db.session.commit()
        answers = iter(handled)
        return [next(answers) if want else handlers.Outcome() for want in wanted]

    def _handle_alone(self, received: Received) -> handlers.Outcome:
        for _ in range(2):  # a key clash the first time is a replay the second
            try:
                return self._handle_all([received])[0]
            except IntegrityError:
                db.session.rollback()
            except _Spoilt:
                db.session.rollback()
                log.exception("handling a message on %s failed; it is dropped", received.topic)
                return handlers.Outcome()
        return handlers.Outcome()

    def _push_commands(self) -> int:
        """Claim the due commands of devices online over MQTT and publish them (QoS 1) once
        the claim is committed. A command published but never answered is published again
        when its lease runs out, as a poll would hand it out again."""
        now = utcnow()
        c, d = Command.__table__.c, Device.__table__.c
        due = (
            select(c.device_id)
            .distinct()
            .join(Device.__table__, d.id == c.device_id)
            .where(
                d.mqtt_online.is_(True),
                d.enabled.is_(True),
                or_(
                    c.status == CommandStatus.queued,
                    and_(c.status == CommandStatus.delivered, c.lease_expires_at <= now),
                ),
            )
        )
        claimed: list[tuple[int, Any]] = []
        for device_id in db.session.execute(due).scalars().all():
            rows = commands.poll_commands(
                DeviceRef(device_id, None),
                limit=100,
                now=now,
                lease_seconds=self.lease_seconds,
                max_attempts=self.max_attempts,
            )
            claimed += [(device_id, row) for row in rows]
        db.session.commit()
        for device_id, row in claimed:
            message = {
                "id": row.id,
                "action": row.action,
                "payload": row.payload,
                "created_at": row.created_at,
                "expires_at": row.expires_at,
            }
            self.client.publish(
                f"{mqtt_access.topic_root(self.prefix, device_id)}/down/commands",
                orjson.dumps(message, option=JSON_OPTIONS),
                qos=1,
            )
        return len(claimed)

    def _apply_credentials(self) -> None:
        try:
            if not self.bridge_role_ok:
                username = self.app.config.get("MQTT_USERNAME") or ""
                self.bridge_role_ok = mqtt_access.ensure_bridge_role(
                    self.dynsec, self.prefix, username
                )
                if not self.bridge_role_ok:
                    return  # this connection is being dropped; the next one goes on
            if mqtt_access.has_changes():
                done = mqtt_access.apply_changes(self.dynsec, self.prefix)
                if done:
                    log.info("brought %d device login(s) in step at the broker", done)
            self.credentials_backoff = 0.0
        except BrokerError as exc:
            # A broker that does not answer dynamic-security commands must not hold up the
            # messages: try again later, and later still.
            self.credentials_backoff = min(
                max(2 * self.credentials_backoff, 5.0), MAX_BACKOFF_SECONDS * 2
            )
            self.credentials_after = time.monotonic() + self.credentials_backoff
            log.warning(
                "the broker's credentials are not in step yet (%s); next try in %.0f s",
                exc,
                self.credentials_backoff,
            )
        finally:
            db.session.commit()

    def _highest_ids(self) -> tuple[Any, ...]:
        row = db.session.execute(
            select(
                select(func.max(Command.__table__.c.id)).scalar_subquery(),
                select(func.max(MqttCredentialChange.__table__.c.id)).scalar_subquery(),
            )
        ).one()
        db.session.commit()
        return tuple(row)

    def _beat(self, connected: bool | None = None) -> None:
        table = BridgeBeat.__table__
        values = {
            "host": f"{socket.gethostname()}:{os.getpid()}"[:200],
            "pid": os.getpid(),
            "started_at": self.started_at,
            "beat_at": utcnow(),
            "connected": self.connected.is_set() if connected is None else connected,
            "last_message_at": self.last_message_at,
            "lag_seconds": round(self.lag, 4),
            "handled": self.handled,
        }
        changed = db.session.execute(
            update(table).where(table.c.client_id == self.client_id).values(**values)
        )
        if not getattr(changed, "rowcount", 0):
            db.session.execute(table.insert().values(client_id=self.client_id, **values))
        db.session.commit()
        self.lag = 0.0

    def _start_listener(self) -> threading.Thread | None:
        """On PostgreSQL, a thread that turns ``NOTIFY portal_mqtt`` into ``wake``."""
        url = db.engine.url
        if url.get_backend_name() != "postgresql":
            return None
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        thread = threading.Thread(
            target=_listen, args=(dsn, self.wake_up, self.stop), name="pg-listen", daemon=True
        )
        thread.start()
        return thread


def _listen(dsn: str, wake: Callable[[], None], stop: threading.Event) -> None:
    import psycopg

    backoff = 1.0
    while not stop.is_set():
        try:
            with psycopg.connect(dsn, autocommit=True) as connection:
                connection.execute(f"LISTEN {CHANNEL}")
                wake()  # anything committed while not listening
                backoff = 1.0
                while not stop.is_set():
                    for _ in connection.notifies(timeout=1.0, stop_after=1):
                        wake()
        except psycopg.Error as exc:
            log.warning("LISTEN %s lost (%s); retrying in %.0f s", CHANNEL, exc, backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)


def run(app: Flask, client_id: str) -> None:
    """Run a bridge until SIGTERM or SIGINT; the batch in hand is finished first."""
    bridge = Bridge(app, client_id)
    restore = on_signals(bridge.stop)
    try:
        bridge.run()
    finally:
        restore()
