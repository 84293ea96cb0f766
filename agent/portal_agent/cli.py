"""``portal-agent``: run a device against a portal (options, logging, state lock, signals)."""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import signal
import sys
import threading
from importlib import metadata
from types import FrameType
from typing import TextIO

from portal_agent.backoff import Backoff
from portal_agent.client import PortalClient
from portal_agent.handlers import load_handler
from portal_agent.ledger import CommandLedger
from portal_agent.mqtt import DEFAULT_PREFIX, MqttAgent, PahoMissing, parse_mqtt_url, require_paho
from portal_agent.plugins import PluginError
from portal_agent.queue import ReadingQueue
from portal_agent.runner import Agent
from portal_agent.sources import load_source

log = logging.getLogger("portal_agent")


def _version() -> str:
    try:
        return metadata.version("portal-agent")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="portal-agent",
        description=(
            "Report readings to a portal and run the commands it sends, buffering while it is away."
        ),
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="the portal, e.g. http://127.0.0.1:5000")
    where.add_argument(
        "--mqtt",
        metavar="URL",
        help="speak MQTT to the portal's broker instead, e.g. mqtt://dev-7@broker:1883 "
        "(mqtts:// for TLS; needs pip install 'portal-agent[mqtt]')",
    )
    p.add_argument(
        "--device-id",
        type=int,
        help="with --mqtt: the device's id (its login is dev-<id>), unless the URL names it",
    )
    p.add_argument(
        "--mqtt-prefix",
        default=DEFAULT_PREFIX,
        help=f"with --mqtt: the portal's topic prefix (default {DEFAULT_PREFIX})",
    )
    p.add_argument(
        "--mqtt-ca",
        metavar="FILE",
        help="with mqtts://: the CA certificates to trust (default: the system's)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("PORTAL_AGENT_TOKEN"),
        help="device token (default: $PORTAL_AGENT_TOKEN)",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=10.0,
        help="seconds between samples and syncs (default 10)",
    )
    p.add_argument(
        "--state-dir",
        help="buffer and command memory (default: a folder under "
        "~/.portal-agent for this portal and token; keep it when rotating the token)",
    )
    p.add_argument(
        "--source",
        default="simulated",
        help="readings: 'simulated' or module:callable (default simulated)",
    )
    p.add_argument(
        "--handler", default="log", help="commands: 'log', 'relay' or module:callable (default log)"
    )
    p.add_argument("--firmware", default=_version(), help="version sent with the heartbeat")
    p.add_argument(
        "--max-buffer",
        type=int,
        default=10_000,
        help="readings kept while the portal is away; the oldest go first",
    )
    p.add_argument(
        "--max-backoff",
        type=float,
        default=60.0,
        help="longest wait between retries, in seconds (default 60)",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="one sample and one sync, then exit (1 if the portal was unreachable)",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if not args.token:
        p.error("a device token is required: --token or PORTAL_AGENT_TOKEN")
    if args.interval <= 0 or args.max_backoff < 1:
        p.error("--interval must be > 0 and --max-backoff >= 1")
    args.target = None
    if args.mqtt is None:
        given = [o for o, v in [("--device-id", args.device_id), ("--mqtt-ca", args.mqtt_ca)] if v]
        if given or args.mqtt_prefix != DEFAULT_PREFIX:
            p.error(f"{', '.join(given) or '--mqtt-prefix'} goes with --mqtt")
    else:
        try:
            args.target = parse_mqtt_url(args.mqtt, args.device_id, args.mqtt_prefix)
        except ValueError as exc:
            p.error(str(exc))
    where = args.url if args.target is None else args.target.url
    args.state_dir = args.state_dir or default_state_dir(where, args.token)
    return args


def default_state_dir(url: str, token: str) -> str:
    """One folder per portal and device: command ids start again at 1 in a fresh portal
    database, and an agent must not take those for commands it already ran."""
    digest = hashlib.sha256(f"{url.rstrip('/')}\n{token}".encode()).hexdigest()[:16]
    return os.path.join(os.path.expanduser("~"), ".portal-agent", digest)


def _lock(state_dir: str) -> TextIO:
    """Hold a lock on the state directory: two agents sharing it could run a command twice."""
    os.makedirs(state_dir, exist_ok=True)
    # Held open for the agent's whole life: closing it would release the lock.
    handle = open(os.path.join(state_dir, "agent.lock"), "w")  # noqa: SIM115
    try:
        import fcntl

        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # not POSIX: no lock, the state files still work
        pass
    except OSError:
        handle.close()
        raise SystemExit(f"portal-agent: another agent is using {state_dir}") from None
    return handle


def build_agent(args: argparse.Namespace) -> Agent | MqttAgent:
    try:
        source, handler = load_source(args.source), load_handler(args.handler)
    except PluginError as exc:
        raise SystemExit(f"portal-agent: {exc}") from None
    if args.target is not None:
        return MqttAgent(
            args.target,
            args.token,
            ReadingQueue(args.state_dir, max_readings=args.max_buffer),
            CommandLedger(args.state_dir),
            source,
            handler,
            interval=args.interval,
            firmware=args.firmware,
            backoff=Backoff(cap=args.max_backoff),
            ca_certs=args.mqtt_ca,
        )
    return Agent(
        PortalClient(args.url, args.token, user_agent=f"portal-agent/{_version()}"),
        ReadingQueue(args.state_dir, max_readings=args.max_buffer),
        CommandLedger(args.state_dir),
        source,
        handler,
        interval=args.interval,
        firmware=args.firmware,
        backoff=Backoff(cap=args.max_backoff),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.target is not None:
        try:
            require_paho()
        except PahoMissing as exc:
            raise SystemExit(f"portal-agent: {exc}") from None
    lock = _lock(args.state_dir)
    try:
        agent = build_agent(args)
    except BaseException:
        lock.close()
        raise
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if args.once:
            return 0 if agent.run_once() else 1
        log.info(
            "portal-agent %s: %s every %ss, state in %s",
            _version(),
            args.url if args.target is None else args.target.url,
            args.interval,
            args.state_dir,
        )
        agent.run(stop)
        return 0
    finally:
        agent.close()
        lock.close()


if __name__ == "__main__":
    sys.exit(main())
