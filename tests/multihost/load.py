"""Devices loading the web hosts: readings uploads and command polls, failing over on errors.

Each device runs in its own thread and sends each request to the next host in turn, as a load
balancer would. A request that fails to connect or answers 5xx is sent again to the next host,
the upload with the same body and the same ``Idempotency-Key`` (as the device agent does).

Some devices are impatient: the first try of every ``IMPATIENT_EVERY``-th upload gives up
waiting for the answer at once, so the host stores that batch but the device retries it on the
other host. The kill of a host does the same by chance; this does it in every run.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from dataclasses import dataclass, field

import requests

MAX_TRIES = 8
TIMEOUT = (2.0, 10.0)  # connect, read (seconds)
IMPATIENT_EVERY = 7
IMPATIENT_TIMEOUT = (2.0, 0.001)
READINGS_PER_BATCH = 20
RETRYABLE = (requests.ConnectionError, requests.Timeout)


@dataclass
class Batch:
    device_id: int
    key: str
    values: list[float]
    body: bytes
    status: int | None = None  # the last answer's status; 201 = accepted
    replayed: bool = False
    tries: list[tuple[float, str, str]] = field(default_factory=list)  # (time, host, outcome)

    @property
    def accepted(self) -> bool:
        return self.status == 201


@dataclass
class Poll:
    device_id: int
    command_ids: list[int]
    at: float


@dataclass
class Record:
    """What the devices saw: the threads append (atomic in CPython); read after they joined."""

    batches: list[Batch] = field(default_factory=list)
    polls: list[Poll] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _send(session, method, hosts, turn, path, record_try, first_timeout=TIMEOUT, **kwargs):
    """Send to ``hosts[turn]``, then to the next host on each retryable failure.

    Returns the last response, or None when every try failed to get one.
    """
    for attempt in range(MAX_TRIES):
        host = hosts[(turn + attempt) % len(hosts)]
        timeout = first_timeout if attempt == 0 else TIMEOUT
        try:
            response = session.request(method, host.url + path, timeout=timeout, **kwargs)
        except RETRYABLE as exc:
            # "refused": the host was already gone; otherwise the request was in flight.
            record_try(host.name, "refused" if "refused" in str(exc) else type(exc).__name__)
        else:
            record_try(host.name, str(response.status_code))
            if response.status_code < 500:
                return response
        time.sleep(min(0.05 * 2**attempt, 1.0))
    return None


def drive_device(index: int, device: dict, hosts: list, until: float, record: Record) -> None:
    """Upload numbered batches and poll commands until ``until`` (``time.time()``)."""
    try:
        _drive(index, device, hosts, until, record)
    except Exception:  # a broken thread must show up in the test, not vanish
        record.errors.append(f"device {device['id']}:\n{traceback.format_exc()}")


def _drive(index: int, device: dict, hosts: list, until: float, record: Record) -> None:
    auth = {"Authorization": f"Bearer {device['token']}"}
    turn, number = index, 0
    with requests.Session() as session:
        while time.time() < until:
            # Values unique per device, so each stored reading can be traced to its batch.
            values = [float(number * 1000 + i) for i in range(READINGS_PER_BATCH)]
            body = json.dumps(
                {"readings": [{"metric": "load", "value": value} for value in values]}
            ).encode()
            batch = Batch(device["id"], f"mh-{device['id']}-{number}", values, body)
            record.batches.append(batch)
            number += 1

            def note(host: str, outcome: str, batch=batch) -> None:
                batch.tries.append((time.time(), host, outcome))

            response = _send(
                session,
                "POST",
                hosts,
                turn,
                "/api/v1/device/readings",
                note,
                first_timeout=IMPATIENT_TIMEOUT if number % IMPATIENT_EVERY == 0 else TIMEOUT,
                data=body,
                headers={
                    **auth,
                    "Content-Type": "application/json",
                    "Idempotency-Key": batch.key,
                },
            )
            turn += 1
            if response is not None:
                batch.status = response.status_code
                batch.replayed = response.headers.get("Idempotent-Replayed") == "true"
                if response.status_code != 201:
                    record.errors.append(f"{batch.key}: {response.status_code} {response.text}")

            response = _send(
                session,
                "GET",
                hosts,
                turn,
                "/api/v1/device/commands?limit=100",
                lambda host, outcome: None,
                headers=auth,
            )
            turn += 1
            if response is not None and response.status_code == 200:
                ids = [command["id"] for command in response.json()["commands"]]
                record.polls.append(Poll(device["id"], ids, time.time()))
            else:
                status = "no answer" if response is None else response.status_code
                record.errors.append(f"poll by device {device['id']}: {status}")


def run_devices(devices: list[dict], hosts: list, until: float) -> tuple[Record, list]:
    """Start one thread per device; returns the shared record and the threads (to join)."""
    record = Record()
    threads = [
        threading.Thread(
            target=drive_device,
            args=(i, device, hosts, until, record),
            name=f"device-{device['id']}",
            daemon=True,
        )
        for i, device in enumerate(devices)
    ]
    for thread in threads:
        thread.start()
    return record, threads
