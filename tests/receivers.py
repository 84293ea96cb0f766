"""Local receivers for notification tests, both on 127.0.0.1 and a free port: an HTTP server
that records each webhook POST and answers as told, and an SMTP server (aiosmtpd) that keeps
each message. Each is started by a fixture and stopped (sockets closed, threads joined) after.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG_AT_MOST = 30.0  # a hanging answer gives up after this long, should the test forget it


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the request threads
    request_queue_size = 128  # a pass opens up to MAX_WORKERS connections at once


class Receiver:
    """An HTTP server that records each POST. ``mode``: ``ok`` answers 204, ``fail`` 500,
    ``hang`` reads the request and answers nothing until the receiver stops."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.mode = "ok"
        self._release = threading.Event()
        self._lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering: the port refuses connections from now on."""
        if self.stopped:
            return
        self.stopped = True
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests.append(
                        Received(self.path, dict(self.headers.items()), body, time.monotonic())
                    )
                    mode = receiver.mode
                if mode == "hang":
                    receiver._release.wait(HANG_AT_MOST)
                    self.close_connection = True
                    return
                self.send_response(500 if mode == "fail" else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format, *args) -> None:
                pass

        return Handler


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpSink:
    """An SMTP server (aiosmtpd) that keeps each message; ``mode`` ``reject`` answers 550."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.mode = "ok"
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.stopped = True

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.mode == "reject":
            return "550 No thanks"
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def start(self) -> SmtpSink:
        self.controller.start()
        self.stopped = False
        return self

    def stop(self) -> None:
        """Stop answering (for good: a stopped sink does not start again)."""
        if not self.stopped:
            self.stopped = True
            self.controller.stop()
