"""``portal-agent --mqtt``: the same agent over MQTT (the portal's MQTT.md), with paho-mqtt.

The promises are those of the HTTP agent, kept by the same parts:

- readings wait in the on-disk buffer (``ReadingQueue``) and leave it only when the portal's
  answer on ``down/acks`` names their batch's key (stored, replayed, or refused for good, as
  a 4xx is over HTTP); each batch keeps its key, and its exact bytes, until then;
- a command id is claimed in the ``CommandLedger`` before its handler runs, so a command the
  bridge publishes again (after its lease, or a redelivery) is never run twice: its stored
  result is published again instead; a result is re-sent until its answer arrives;
- when the broker is away the agent keeps sampling into the buffer and reconnects with the
  agent's ``Backoff``.

One thread does everything: it calls paho's ``loop_read``/``loop_write``/``loop_misc`` around
its own ``select``, so callbacks only note what arrived, and the buffer, the ledger and the
handler are used from that thread alone (as over HTTP, a command runs in the loop: one that takes
longer than 1.5 keep-alives, 90 s, costs a reconnection, and its result goes out after it).
paho is imported when an ``MqttAgent`` is made, so the HTTP agent runs without it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from portal_agent.backoff import Backoff
from portal_agent.handlers import Handler
from portal_agent.ledger import CommandLedger, Outcome
from portal_agent.queue import Batch, ReadingQueue
from portal_agent.runner import run_command, take_sample
from portal_agent.sources import Source

if TYPE_CHECKING:
    import paho.mqtt.client as paho

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'portal-agent[mqtt]'"
DEFAULT_PREFIX = "portal"
PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}(/[A-Za-z0-9_.-]{1,64}){0,3}$")
USERNAME_RE = re.compile(r"^dev-([1-9][0-9]{0,17})$")
MAX_MESSAGE_BYTES = 1024 * 1024  # what the portal takes in one message unless told otherwise
TICK = 0.25  # longest wait in select: how soon a stop request is seen
GOODBYE_SECONDS = 2.0  # at most this long to say "offline" and disconnect when stopping
ONCE_LINGER = 1.0  # --once: how long to wait for commands the portal pushes on "online"


class PahoMissing(RuntimeError):
    """paho-mqtt is not installed: the agent was installed without its ``mqtt`` extra."""


def require_paho() -> None:
    """Raise PahoMissing (saying how to install it) when paho-mqtt cannot be imported."""
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError as exc:
        raise PahoMissing(f"--mqtt needs paho-mqtt: {INSTALL_HINT}") from exc


@dataclass(frozen=True)
class MqttTarget:
    """Where a device logs in: broker, TLS or not, its id (``dev-<id>``) and the topic prefix."""

    host: str
    port: int
    tls: bool
    device_id: int
    prefix: str = DEFAULT_PREFIX

    @property
    def username(self) -> str:
        return f"dev-{self.device_id}"

    @property
    def root(self) -> str:
        return f"{self.prefix}/{self.username}"

    @property
    def url(self) -> str:
        """The canonical URL, without secrets (for logs and the default state directory)."""
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.prefix}"


def parse_mqtt_url(
    url: str, device_id: int | None = None, prefix: str = DEFAULT_PREFIX
) -> MqttTarget:
    """``mqtt://dev-7@host:1883`` (``mqtts://`` for TLS) and/or ``device_id`` as a target;
    ValueError saying what is wrong otherwise."""
    usage = "the broker's URL looks like mqtt://dev-7@host:1883 (mqtts:// for TLS)"
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"{usage}, got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{usage}: bad port in {url!r}") from None
    if parts.password is not None:
        raise ValueError("give the device token with --token or PORTAL_AGENT_TOKEN, not in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{usage} (no path; --mqtt-prefix sets the topic prefix), got {url!r}")
    from_url: int | None = None
    if parts.username:
        match = USERNAME_RE.match(unquote(parts.username))
        if match is None:
            raise ValueError(f"the URL's user is the device's login, dev-<id>: got {url!r}")
        from_url = int(match.group(1))
    if device_id is not None and device_id < 1:
        raise ValueError("the device id is a positive number")
    if device_id is not None and from_url is not None and device_id != from_url:
        raise ValueError(f"--device-id {device_id} and the URL's dev-{from_url} disagree")
    chosen = device_id if device_id is not None else from_url
    if chosen is None:
        raise ValueError("the device id is needed: --device-id N or mqtt://dev-N@host:1883")
    if not PREFIX_RE.match(prefix):
        raise ValueError(
            f"the topic prefix is 1-4 levels of letters, digits and _ . - (got {prefix!r})"
        )
    tls = parts.scheme == "mqtts"
    return MqttTarget(parts.hostname, port or (8883 if tls else 1883), tls, chosen, prefix)


@dataclass(frozen=True)
class _Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    session: int


@dataclass
class _InFlight:
    """The batch published and waiting for its answer on ``down/acks``."""

    batch: Batch
    payload: bytes
    sent_at: float = float("-inf")
    sends: int = 0


class MqttAgent:
    """A device speaking MQTT: samples into the buffer, publishes batches, heartbeats and
    results, and runs the commands pushed to it, each id at most once."""

    def __init__(
        self,
        target: MqttTarget,
        token: str,
        queue: ReadingQueue,
        ledger: CommandLedger,
        source: Source,
        handler: Handler,
        *,
        interval: float = 10.0,
        heartbeat_seconds: float = 60.0,
        firmware: str | None = None,
        backoff: Backoff | None = None,
        ack_timeout: float = 30.0,
        keepalive: int = 60,
        ca_certs: str | None = None,
    ) -> None:
        self.target, self.queue, self.ledger = target, queue, ledger
        self.source, self.handler = source, handler
        self.interval, self.heartbeat_seconds, self.firmware = interval, heartbeat_seconds, firmware
        self.backoff = backoff or Backoff(cap=max(60.0, interval))
        self.ack_timeout = ack_timeout
        self.client = _make_client(target, token, ca_certs)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.connect_async(target.host, target.port, keepalive)
        self._inbox: list[_Received] = []  # messages received, handled after the read
        self._session = 0  # counts connections: a message is acknowledged on the one it came on
        self._connected = False  # the broker accepted the login on the current socket
        self._fresh = False  # connected, and what is due on a new connection not done yet
        self._closing = False
        self._next_connect = 0.0
        self._in_flight: _InFlight | None = None
        self._results_sent: dict[int, float] = {}  # command id -> when its result went out
        self._next_result_scan = 0.0
        self._last_heartbeat: float | None = None

    # ---- paho's callbacks (called from this agent's own thread, inside loop_read) ----------

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            # e.g. "Not authorized": a wrong or rotated token. The broker closes the socket;
            # _on_disconnect schedules the next try, as over HTTP a 401 is tried again later.
            log.warning("the broker refused %s's login: %s", self.target.username, reason)
            return
        self._connected = self._fresh = True
        self._session += 1
        sock = client.socket()
        if isinstance(sock, socket.socket):  # small messages go out at once (no Nagle delay)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.subscribe(f"{self.target.root}/down/#", qos=1)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        was_connected, self._connected = self._connected, False
        if self._closing:
            return
        delay = self.backoff.next_delay()
        self._next_connect = time.monotonic() + delay
        log.warning(
            "%s (%s); %d readings buffered; retrying in %.1fs",
            "lost the broker" if was_connected else "could not log in to the broker",
            reason,
            len(self.queue),
            delay,
        )

    def _on_message(self, _c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        self._inbox.append(
            _Received(
                message.topic, bytes(message.payload), message.mid, message.qos, self._session
            )
        )

    # ---- the loop --------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def run(self, stop: threading.Event) -> None:
        """Sample every ``interval``, talk to the broker in between, until ``stop`` is set;
        then say ``offline`` and disconnect."""
        next_sample = time.monotonic()
        try:
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_sample:
                    self.sample()
                    next_sample = now + self.interval
                self._turn(stop, min(TICK, max(0.0, next_sample - time.monotonic())))
        finally:
            self.goodbye()

    def run_once(self, timeout: float = 30.0) -> bool:
        """One sample, then connect and send what is buffered and any unreported result, run
        the commands that come meanwhile, and disconnect. False when the broker could not be
        reached or not everything was answered within ``timeout`` seconds."""
        self.sample()
        stop = threading.Event()
        deadline = time.monotonic() + timeout
        idle_since: float | None = None
        try:
            while time.monotonic() < deadline:
                self._turn(stop, TICK)
                if self.backoff.failures and not self._connected:
                    return False  # one try only: the next run sends what is buffered
                busy = (
                    not self._connected
                    or self._fresh
                    or self._in_flight is not None
                    or len(self.queue) > 0
                    or bool(self.ledger.unreported())
                )
                now = time.monotonic()
                if busy:
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                elif now - idle_since >= ONCE_LINGER:
                    return True
            return False
        finally:
            self.goodbye()

    def _turn(self, stop: threading.Event, wait: float) -> None:
        """One round: connect or publish what is due, wait for the network at most ``wait``
        seconds, then handle what arrived. A surprise is logged, not fatal."""
        try:
            self._step(time.monotonic())
            self._network(stop, wait)
            self._handle_inbox()
        except Exception:  # the loop's boundary: a surprise must not end the agent
            delay = self.backoff.next_delay()
            log.exception("the MQTT loop failed; going on in %.1fs", delay)
            stop.wait(delay)

    def sample(self) -> None:
        take_sample(self.source, self.queue)

    def _step(self, now: float) -> None:
        if self.client.socket() is None:
            self._connected = False
            if now >= self._next_connect:
                self._connect(now)
            return
        if not self._connected:
            return  # waiting for the broker's CONNACK
        if self._fresh:
            self._fresh = False
            self._on_ready(now)
        if self._last_heartbeat is None or now - self._last_heartbeat >= self.heartbeat_seconds:
            self._last_heartbeat = now
            body = {"firmware": self.firmware} if self.firmware else {}
            self._publish("heartbeat", json.dumps(body))
        self._send_batch(now)
        if now >= self._next_result_scan:
            self._send_results(now)

    def _connect(self, now: float) -> None:
        try:
            self.client.reconnect()
        except OSError as exc:  # refused, unreachable, DNS, TLS: try again later
            delay = self.backoff.next_delay()
            self._next_connect = now + delay
            log.warning(
                "broker %s:%s unavailable (%s); %d readings buffered; retrying in %.1fs",
                self.target.host,
                self.target.port,
                exc,
                len(self.queue),
                delay,
            )

    def _on_ready(self, now: float) -> None:
        """Just connected: say online, heartbeat, and send again whatever was waiting."""
        if self.backoff.failures:
            log.info("connected to the broker again")
        else:
            log.info("connected to the broker at %s:%s", self.target.host, self.target.port)
        self.backoff.reset()
        self._publish("status", "online", retain=True)
        self._last_heartbeat = None
        if self._in_flight is not None:
            self._in_flight.sent_at = float("-inf")  # its answer may have been lost: resend
        self._results_sent.clear()
        self._next_result_scan = now

    def _network(self, stop: threading.Event, wait: float) -> None:
        """paho's network work around one ``select`` (no paho thread, no socket pair)."""
        sock = self.client.socket()
        if sock is None:
            stop.wait(min(wait, max(0.0, self._next_connect - time.monotonic())))
            return
        pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted, unread
        if callable(pending) and pending():
            wait = 0.0
        writers = [sock] if self.client.want_write() else []
        try:
            readable, writable, _ = select.select([sock], writers, [], wait)
        except (OSError, ValueError):  # the socket went away under us: let paho find out
            readable, writable = [sock], []
        if readable or (callable(pending) and pending()):
            self.client.loop_read()
        if writable and self.client.socket() is not None:
            self.client.loop_write()
        if self.client.socket() is not None:
            self.client.loop_misc()

    def _publish(self, what: str, payload: str | bytes, retain: bool = False) -> None:
        self.client.publish(f"{self.target.root}/up/{what}", payload, qos=1, retain=retain)

    # ---- readings --------------------------------------------------------------------------

    def _send_batch(self, now: float) -> None:
        flight = self._in_flight
        if flight is None:
            batch = self.queue.next_batch()
            if batch is None:
                return
            payload = json.dumps(
                {"readings": batch.readings, "key": batch.key}, separators=(",", ":")
            ).encode()
            if len(payload) > MAX_MESSAGE_BYTES:
                log.error(
                    "a batch of %d readings makes a %d-byte message, more than the portal "
                    "takes; dropping it",
                    len(batch.readings),
                    len(payload),
                )
                self.queue.ack(batch)
                return
            flight = self._in_flight = _InFlight(batch, payload)
        elif now - flight.sent_at < self.ack_timeout * 2 ** min(flight.sends - 1, 4):
            return
        elif flight.sends:
            log.warning(
                "no answer for the batch %s after %d sends; sending it again",
                flight.batch.key,
                flight.sends,
            )
        # The same bytes each time: the portal's key check compares the whole message.
        self._publish("readings", flight.payload)
        flight.sent_at, flight.sends = now, flight.sends + 1

    def _readings_answered(self, body: dict[str, Any]) -> None:
        flight, key = self._in_flight, body.get("key")
        if flight is None or key != flight.batch.key:
            log.debug("answer for batch %s, which is not waiting (a repeat): %s", key, body)
            return
        error = body.get("error")
        if error is not None:
            log.error(
                "portal refused a batch of %d readings for good, dropping it: %s",
                len(flight.batch.readings),
                _describe(error),
            )
        else:
            log.debug("uploaded %s readings (key %s)", body.get("accepted"), key)
        self.queue.ack(flight.batch)
        self._in_flight = None

    # ---- commands and results --------------------------------------------------------------

    def _on_command(self, payload: bytes) -> None:
        try:
            command = json.loads(payload)
        except ValueError:
            log.warning("ignoring a command message that is not JSON: %r", payload[:200])
            return
        command_id = command.get("id") if isinstance(command, dict) else None
        if isinstance(command_id, bool) or not isinstance(command_id, int) or command_id < 1:
            log.warning("ignoring a command message without an id: %r", payload[:200])
            return
        outcome = run_command(self.ledger, self.handler, command)
        self._send_result(outcome, time.monotonic())

    def _send_result(self, outcome: Outcome, now: float) -> None:
        body = json.dumps({"status": outcome.status, "result": outcome.result})
        self._publish(f"results/{outcome.command_id}", body)
        self._results_sent[outcome.command_id] = now

    def _send_results(self, now: float) -> None:
        """Results not answered yet: sent again after ``ack_timeout`` (and on reconnecting)."""
        self._next_result_scan = now + self.ack_timeout
        for outcome in self.ledger.unreported():
            sent = self._results_sent.get(outcome.command_id)
            if sent is None or now - sent >= self.ack_timeout:
                self._send_result(outcome, now)

    def _result_answered(self, what: str, body: dict[str, Any]) -> None:
        raw_id = what.split("/", 1)[1]
        if not raw_id.isdigit():
            return
        command_id = int(raw_id)
        if body.get("error") is not None:
            log.warning(
                "portal refused the result of command %d: %s", command_id, _describe(body["error"])
            )
        self.ledger.mark_reported(command_id)
        self._results_sent.pop(command_id, None)

    # ---- what arrived ----------------------------------------------------------------------

    def _handle_inbox(self) -> None:
        down = f"{self.target.root}/down/"
        while self._inbox:
            received = self._inbox.pop(0)
            topic = received.topic
            what = topic[len(down) :] if topic.startswith(down) else topic
            if what == "commands":
                self._on_command(received.payload)
            elif what == "acks":
                self._on_ack(received.payload)
            else:
                log.debug("ignoring a message on %s", topic)
            # Acknowledged to the broker once handled: a command that came just before a stop
            # or a crash is handed out again at the next connection (the ledger knows its id).
            # One of an earlier connection comes again on this one anyway.
            if received.session == self._session and self._connected:
                self.client.ack(received.mid, received.qos)

    def _on_ack(self, payload: bytes) -> None:
        try:
            body = json.loads(payload)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            log.warning("ignoring an answer that is not a JSON object: %r", payload[:200])
            return
        what = body.get("topic")
        if what == "readings":
            self._readings_answered(body)
        elif isinstance(what, str) and what.startswith("results/"):
            self._result_answered(what, body)
        elif body.get("error") is not None:
            log.warning("portal refused a message on up/%s: %s", what, _describe(body["error"]))

    # ---- stopping --------------------------------------------------------------------------

    def goodbye(self) -> None:
        """Say ``offline`` (retained: a clean disconnect sends no last will) and disconnect,
        within GOODBYE_SECONDS. What was not answered stays in the buffer and the ledger."""
        deadline = time.monotonic() + GOODBYE_SECONDS
        stop = threading.Event()
        if self._connected:
            info = self.client.publish(
                f"{self.target.root}/up/status", "offline", qos=1, retain=True
            )
            while not info.is_published() and self._connected and time.monotonic() < deadline:
                self._network(stop, 0.05)
        self._closing = True
        self._connected = False
        if self.client.socket() is not None:
            self.client.disconnect()
        while self.client.socket() is not None and time.monotonic() < deadline:
            self._network(stop, 0.05)
        # A socket still open (a broker that stopped reading): closed here, not by the GC.
        self.client._reset_sockets()
        self._closing = False
        self._inbox.clear()

    def close(self) -> None:
        """Disconnect (if still connected) and close the buffer and the ledger."""
        if self.client.socket() is not None:
            self.goodbye()
        self.queue.close()
        self.ledger.close()


def _make_client(target: MqttTarget, token: str, ca_certs: str | None) -> paho.Client:
    try:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
    except ImportError as exc:
        raise PahoMissing(f"--mqtt needs paho-mqtt: {INSTALL_HINT}") from exc
    # MQTT 3.1.1 with a persistent session: commands published while the agent is briefly
    # away wait for it at the broker (a repeat is harmless: the ledger knows the id).
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=target.username,
        clean_session=False,
        protocol=mqtt.MQTTv311,
        manual_ack=True,
    )
    client.username_pw_set(target.username, token)
    client.will_set(f"{target.root}/up/status", "offline", qos=1, retain=True)
    if target.tls:
        client.tls_set(ca_certs=ca_certs)
    client.connect_timeout = 10.0
    return client


def _describe(error: Any) -> str:
    if not isinstance(error, dict):
        return repr(error)
    text = f"{error.get('code', 'error')}: {error.get('message', '')}"
    return f"{text} {error['fields']}" if error.get("fields") else text
