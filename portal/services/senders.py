"""Sending notifications over the network: a signed webhook POST or an email, each bounded in
time, many at once. No database and no Flask here: the outbox (``notifications``) hands over
plain ``Job`` values and records the ``Outcome`` of each.

A send may take ``SEND_TIMEOUT`` seconds in all, however the other side behaves: connecting
may take ``CONNECT_TIMEOUT``, and a send that is still talking at its deadline has its socket
shut from the pass's thread (a receiver that trickles one byte every few seconds would
otherwise outlast any per-read timeout). So a dead or slow receiver costs its own send those
seconds and delays no other.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import logging
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0
SEND_TIMEOUT = 5.0
MAX_WORKERS = 16
# How long the pass waits for a send whose socket it shut before it gives up on the thread
# (one stuck where no socket can be shut: a DNS look-up).
ABANDON_AFTER = 2.0
USER_AGENT = "Portal-Webhook/1"
SIGNATURE_HEADER = "X-Portal-Signature"


def sign(secret: str, body: bytes) -> str:
    """The ``X-Portal-Signature`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class SmtpSettings:
    host: str | None
    port: int
    username: str | None
    password: str | None
    from_address: str | None
    starttls: bool


@dataclass(frozen=True)
class Job:
    """One delivery to send: to a webhook ``url`` (signed with ``secret``) or an ``address``."""

    delivery_id: int
    event: str
    body: bytes  # the JSON event, exactly as signed and sent
    url: str | None = None
    secret: str | None = None
    address: str | None = None
    subject: str = ""
    text: str = ""
    # Set when there is nothing to send (a disabled channel, an unreadable secret): the
    # attempt fails with this error and no connection is made.
    refused: str = ""


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str = ""
    started: float = 0.0  # time.monotonic() when the send began
    duration_ms: int = 0
    sent: bool = True  # False: not begun before the pass's deadline; no attempt was made


class _CutOff(Exception):
    pass


class _Line:
    """The socket of one send in progress, so that the pass can shut it at the deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socket: Callable[[], socket.socket | None] | None = None
        self.cut = False
        self.connected = False
        self.started: float | None = None

    def attach(self, current_socket: Callable[[], socket.socket | None] | None) -> None:
        with self._lock:
            if self.cut and current_socket is not None:
                raise _CutOff()
            self._socket = current_socket
            self.connected = self.connected or current_socket is not None

    def cut_off(self) -> None:
        with self._lock:
            self.cut = True
            sock = self._socket() if self._socket is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):  # closed already, or never connected
                    sock.shutdown(socket.SHUT_RDWR)


def send_all(
    jobs: Sequence[Job], smtp: SmtpSettings, deadline: float, timeout: float | None = None
) -> list[Outcome]:
    """Send every job at once (up to ``MAX_WORKERS`` at a time); one outcome per job, in order.

    Each send takes at most ``timeout`` seconds (default ``SEND_TIMEOUT``). A job not begun
    by ``deadline - timeout`` (``time.monotonic()``) is not sent at all (``sent`` False), so
    the whole call returns by about ``deadline``.
    """
    if not jobs:
        return []
    timeout = SEND_TIMEOUT if timeout is None else timeout
    lines = [_Line() for _ in jobs]
    pool = ThreadPoolExecutor(min(len(jobs), MAX_WORKERS), thread_name_prefix="portal-notify")
    futures: dict[Future[Outcome], int] = {
        pool.submit(_run, job, line, smtp, deadline, timeout): index
        for index, (job, line) in enumerate(zip(jobs, lines, strict=True))
    }
    stuck = _watch(futures, lines, timeout)
    pool.shutdown(wait=not stuck, cancel_futures=True)
    outcomes: list[Outcome] = []
    for future, index in futures.items():
        if future.done() and not future.cancelled():
            outcomes.append(future.result())
        elif future.cancelled():
            outcomes.append(Outcome(ok=False, sent=False))
        else:
            started = lines[index].started or time.monotonic()
            outcomes.append(_failed(f"No answer within {timeout:g} s.", started))
    return outcomes


def _watch(futures: dict[Future[Outcome], int], lines: list[_Line], timeout: float) -> bool:
    """Wait for the sends, shutting each one's socket at its own deadline; True when some
    thread could not be stopped (it is left behind)."""
    pending = set(futures)
    while pending:
        _done, pending = wait(pending, timeout=0.05, return_when=FIRST_COMPLETED)
        now = time.monotonic()
        for future in pending:
            line = lines[futures[future]]
            if line.started is None:
                continue
            if now > line.started + timeout:
                line.cut_off()
            if now > line.started + timeout + ABANDON_AFTER:
                log.warning("a notification send is stuck past its deadline; left behind")
                return True
    return False


def _run(job: Job, line: _Line, smtp: SmtpSettings, deadline: float, timeout: float) -> Outcome:
    started = time.monotonic()
    if started + timeout > deadline:
        return Outcome(ok=False, sent=False)
    line.started = started
    if job.refused:
        return _failed(job.refused, started)
    try:
        if job.url is not None:
            status = _post(job, line, timeout)
            if 200 <= status < 300:
                return _succeeded(status, started)
            return _failed(f"HTTP {status}", started, status)
        status = _mail(job, line, smtp, timeout)
        return _succeeded(status, started)
    except smtplib.SMTPResponseException as exc:
        reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
        return _failed(f"SMTP {exc.smtp_code}: {reply}".strip(), started, exc.smtp_code)
    except (_CutOff, OSError, http.client.HTTPException, smtplib.SMTPException, ValueError) as exc:
        if isinstance(exc, TimeoutError) and not line.connected:
            connect = min(CONNECT_TIMEOUT, timeout)
            return _failed(f"Could not connect within {connect:g} s.", started)
        if line.cut or isinstance(exc, TimeoutError):
            return _failed(f"No answer within {timeout:g} s.", started)
        return _failed(_describe(exc), started)
    except Exception as exc:  # a boundary: one send's surprise must not lose the others
        log.exception("delivery %s: sending failed unexpectedly", job.delivery_id)
        return _failed(_describe(exc), started)


def _succeeded(status: int, started: float) -> Outcome:
    return Outcome(True, status, "", started, _ms_since(started))


def _failed(error: str, started: float, status: int | None = None) -> Outcome:
    return Outcome(False, status, error[:500], started, _ms_since(started))


def _ms_since(started: float) -> int:
    return max(0, round((time.monotonic() - started) * 1000))


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"


# ---- webhooks --------------------------------------------------------------------------------


def _post(job: Job, line: _Line, timeout: float) -> int:
    """POST the body, signed; return the HTTP status. Redirects are not followed."""
    assert job.url is not None and job.secret is not None
    parts = urlsplit(job.url)
    host = parts.hostname or ""
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(host, parts.port, timeout=min(CONNECT_TIMEOUT, timeout))
    try:
        connection.connect()
        line.attach(lambda: connection.sock)
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request(
            "POST",
            path,
            body=job.body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "X-Portal-Event": job.event,
                "X-Portal-Delivery": str(job.delivery_id),
                SIGNATURE_HEADER: sign(job.secret, job.body),
            },
        )
        # The status line and headers are the answer; the body is not read (nor waited for).
        return connection.getresponse().status
    finally:
        line.attach(None)
        connection.close()


# ---- email -----------------------------------------------------------------------------------


def _message(job: Job, smtp: SmtpSettings) -> EmailMessage:
    message = EmailMessage()
    message["From"] = smtp.from_address or ""
    message["To"] = job.address or ""
    message["Subject"] = job.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=(smtp.from_address or "portal").rpartition("@")[2])
    message["X-Portal-Event"] = job.event
    message["X-Portal-Delivery"] = str(job.delivery_id)
    message.set_content(job.text)
    message.add_attachment(job.body, maintype="application", subtype="json", filename="event.json")
    return message


def _mail(job: Job, line: _Line, smtp: SmtpSettings, timeout: float) -> int:
    """Hand the email to the SMTP server; return its reply code (250)."""
    if not smtp.host or not smtp.from_address:
        raise ValueError("Email is not set up: PORTAL_SMTP_HOST and PORTAL_SMTP_FROM are needed.")
    # A fixed HELO name: smtplib's default looks the host's full name up in DNS, unbounded.
    client = smtplib.SMTP(
        timeout=min(CONNECT_TIMEOUT, timeout), local_hostname=socket.gethostname()
    )
    try:
        client.connect(smtp.host, smtp.port)
        line.attach(lambda: client.sock)
        if client.sock is not None:
            client.sock.settimeout(timeout)
        if smtp.starttls:
            client.starttls(context=ssl.create_default_context())
        if smtp.username:
            client.login(smtp.username, smtp.password or "")
        client.send_message(_message(job, smtp))
        # Taken: a failing goodbye must not make it a failure (and send it twice).
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()
        return 250
    finally:
        line.attach(None)
        client.close()
