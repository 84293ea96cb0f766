"""Two web hosts and two schedulers on one database behave as one portal, and losing a web host
and a scheduler to SIGKILL mid-load loses or doubles nothing.

The session and login tests need both web hosts and run first (file order); the load then
kills ``web1`` and the scheduler that has been doing the firing, and the tests after it check
what the survivors left behind in the database and what the devices were told.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import func, select

from portal.models import Command, Reading, Schedule
from tests.conftest import CSRF_RE
from tests.multihost.cluster import SECOND_CLIENT, Process, wait_for
from tests.multihost.conftest import ADMIN, ADMIN_PASSWORD, TARGET, TARGET_PASSWORD
from tests.multihost.load import Record, run_devices

pytestmark = [pytest.mark.multihost, pytest.mark.postgres]

FAILED = "Invalid username or password."
LOGIN_LIMIT = 10  # PORTAL_LOGIN_LIMIT's default: 10 per 15 minutes
# The load's timeline, in seconds from the first due time (t0).
LEAD = 4.0  # schedules are made this long before t0
WINDOW = 16  # due times fall in [t0, t0 + WINDOW)
KILL_SCHEDULER_AT = 6.02  # just after a due time of every interval schedule: mid-pass
KILL_WEB_AT = 8.5
LOAD_AFTER_WINDOW = 1.0
INTERVALS = (2, 3, 2, 3, 2, 3, 2, 3)
ONE_OFFS = 10  # at t0 + 0.5, 2.0, 3.5, ...


def _csrf(html: str) -> str:
    tag = CSRF_RE.search(html)
    assert tag, "no csrf_token in the page"
    return re.search(r'value="([^"]+)"', tag.group(0)).group(1)


def _log_in(session: requests.Session, host, username: str, password: str):
    token = _csrf(session.get(host.url + "/login", timeout=10).text)
    return session.post(
        host.url + "/login",
        data={"username": username, "password": password, "csrf_token": token},
        allow_redirects=False,
        timeout=10,
    )


def _both_web_hosts(cluster):
    dead = [p.name for p in cluster.web if not p.alive()]
    assert not dead, f"{dead} already killed: run this test before the load (file order)"
    return cluster.web


class _FromAddress(HTTPAdapter):
    """Connections from a given local address: a second client with its own IP."""

    def __init__(self, address: str) -> None:
        self._address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self._address, 0)
        super().init_poolmanager(*args, **kwargs)


def test_a_session_made_on_one_host_works_on_the_other(cluster):
    web1, web2 = _both_web_hosts(cluster)
    for maker, other in ((web1, web2), (web2, web1)):
        with requests.Session() as session:
            assert _log_in(session, maker, ADMIN, ADMIN_PASSWORD).status_code == 302
            cookie = session.cookies.get("session")
        assert cookie, f"{maker.name} set no session cookie"
        response = requests.get(
            other.url + "/admin/", cookies={"session": cookie}, allow_redirects=False, timeout=10
        )
        assert response.status_code == 200, f"{maker.name}'s session on {other.name}"
        anonymous = requests.get(other.url + "/admin/", allow_redirects=False, timeout=10)
        assert anonymous.status_code == 302
        assert anonymous.headers["Location"].startswith("/login")


def test_a_logout_on_one_host_ends_the_session_on_the_other(cluster):
    web1, web2 = _both_web_hosts(cluster)
    with requests.Session() as session:
        assert _log_in(session, web1, ADMIN, ADMIN_PASSWORD).status_code == 302
        copy = session.cookies.get("session")
        token = _csrf(session.get(web1.url + "/admin/", timeout=10).text)
        logout = session.post(
            web1.url + "/logout", data={"csrf_token": token}, allow_redirects=False, timeout=10
        )
        assert logout.status_code == 302
    response = requests.get(
        web2.url + "/admin/", cookies={"session": copy}, allow_redirects=False, timeout=10
    )
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    api = requests.get(web2.url + "/api/v1/devices", cookies={"session": copy}, timeout=10)
    assert api.status_code == 401


def test_a_csrf_token_from_one_host_is_accepted_by_the_other(cluster):
    web1, web2 = _both_web_hosts(cluster)
    with requests.Session() as session:
        assert _log_in(session, web1, ADMIN, ADMIN_PASSWORD).status_code == 302
        token = _csrf(session.get(web1.url + "/admin/", timeout=10).text)
        cookie = session.cookies.get("session")
    response = requests.post(
        web2.url + "/api/v1/devices",
        json={"name": "mh-made-through-a-session"},
        headers={"X-CSRFToken": token},
        cookies={"session": cookie},
        timeout=10,
    )
    assert response.status_code == 201, response.text


def test_failed_logins_spread_over_both_hosts_are_throttled_as_one(cluster):
    # From an address of its own, so no other test's logins count. Each host sees only half the
    # failures, under the limit: only a count shared through Redis can refuse the next attempt.
    hosts = _both_web_hosts(cluster)
    sessions = []
    try:
        for _ in hosts:
            session = requests.Session()
            sessions.append(session)
            session.mount("http://", _FromAddress(SECOND_CLIENT))
        for attempt in range(LOGIN_LIMIT):
            i = attempt % len(hosts)
            response = _log_in(sessions[i], hosts[i], TARGET, f"wrong-{attempt}")
            assert response.status_code == 200, f"attempt {attempt + 1} on {hosts[i].name}"
            assert FAILED in response.text
        for session, host in zip(sessions, hosts, strict=True):
            # Even the right password: the user name and the address are both over the limit.
            response = _log_in(session, host, TARGET, TARGET_PASSWORD)
            assert response.status_code == 429, f"attempt {LOGIN_LIMIT + 1} on {host.name}"
            assert int(response.headers["Retry-After"]) > 0
    finally:
        for session in sessions:
            session.close()


# ---- the load, with a web host and a scheduler killed in the middle --------------------------


@dataclass
class Loaded:
    record: Record
    expected_due: dict[int, list[datetime]]  # schedule id -> its due times in the window
    t0: float
    killed_scheduler: Process
    surviving_scheduler: Process


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def _make_schedules(cluster, t0: float) -> dict[int, list[datetime]]:
    start, end = datetime.fromtimestamp(t0, UTC), datetime.fromtimestamp(t0 + WINDOW, UTC)
    bodies, expected = [], []
    for i, seconds in enumerate(INTERVALS):
        bodies.append(
            {"interval_seconds": seconds, "start_at": _iso(t0), "end_at": _iso(t0 + WINDOW)}
        )
        expected.append(
            [start + timedelta(seconds=k * seconds) for k in range(math.ceil(WINDOW / seconds))]
        )
        assert expected[-1][-1] < end
        bodies[-1]["name"] = f"mh-every-{seconds}s-{i}"
    for k in range(ONE_OFFS):
        at = t0 + 0.5 + 1.5 * k
        bodies.append({"run_at": _iso(at), "name": f"mh-once-{k}"})
        expected.append([datetime.fromtimestamp(at, UTC)])
    due: dict[int, list[datetime]] = {}
    with requests.Session() as session:
        for i, (body, times) in enumerate(zip(bodies, expected, strict=True)):
            host = cluster.web[i % len(cluster.web)]
            device = cluster.devices[i % len(cluster.devices)]
            response = session.post(
                host.url + "/api/v1/schedules",
                json={**body, "device_id": device["id"], "action": "mh.ping", "payload": {"n": i}},
                headers={"Authorization": f"Bearer {cluster.admin_token}"},
                timeout=10,
            )
            assert response.status_code == 201, response.text
            due[response.json()["id"]] = times
    return due


def _sleep_until(at: float) -> None:
    time.sleep(max(0.0, at - time.time()))


def _schedules_finished(cluster, ids) -> bool:
    query = select(func.count()).where(Schedule.id.in_(ids), Schedule.next_fire_at.is_not(None))
    with cluster.engine.connect() as conn:
        return conn.execute(query).scalar() == 0


def _fired_since(cluster, scheduler: Process, since: float) -> int:
    start = datetime.fromtimestamp(since, UTC)
    return sum(fired for at, fired in cluster.scheduler_passes(scheduler) if at >= start)


@pytest.fixture(scope="module")
def loaded(cluster):
    """Devices load both web hosts while schedules come due; the scheduler doing the firing,
    then ``web1``, are SIGKILLed (the whole process group: master and workers) in between."""
    web1 = cluster.web[0]
    t0 = math.ceil(time.time() + LEAD)
    expected_due = _make_schedules(cluster, t0)
    assert time.time() < t0, "making the schedules took longer than LEAD; raise it"
    until = t0 + WINDOW + LOAD_AFTER_WINDOW
    record, threads = run_devices(cluster.devices, cluster.web, until)
    # Both schedulers wake at each due time and one wins it: kill the one that has been winning,
    # just after a due time, most likely in the middle of its pass.
    _sleep_until(t0 + KILL_SCHEDULER_AT - 0.5)
    killed, survivor = sorted(
        cluster.schedulers, key=lambda s: _fired_since(cluster, s, t0), reverse=True
    )
    _sleep_until(t0 + KILL_SCHEDULER_AT)
    killed.kill()
    _sleep_until(t0 + KILL_WEB_AT)
    web1.kill()
    for thread in threads:
        thread.join(timeout=max(1.0, until - time.time() + 60))
    assert not any(thread.is_alive() for thread in threads), "a device thread hung"
    # Done when every schedule has run out of due times; what fired is for the tests to judge.
    with contextlib.suppress(TimeoutError):
        wait_for(
            lambda: _schedules_finished(cluster, list(expected_due)),
            timeout=20,
            what="the surviving scheduler firing every due time",
        )
    return Loaded(record, expected_due, t0, killed, survivor)


def test_the_devices_met_no_error_the_survivor_could_not_absorb(loaded):
    assert loaded.record.errors == []
    refused = [(b.key, b.status, b.tries) for b in loaded.record.batches if not b.accepted]
    assert refused == [], "uploads never accepted"


def test_no_accepted_reading_is_lost_or_doubled(cluster, loaded):
    query = select(Reading.device_id, Reading.value, func.count()).group_by(
        Reading.device_id, Reading.value
    )
    with cluster.engine.connect() as conn:
        stored = {(device, value): n for device, value, n in conn.execute(query)}
    sent = {(b.device_id, v): b for b in loaded.record.batches for v in b.values}
    accepted = [(b.device_id, v) for b in loaded.record.batches if b.accepted for v in b.values]
    assert len(accepted) > 1000, "too little load to show anything"
    lost = [key for key in accepted if key not in stored]
    doubled = [(key, n) for key, n in stored.items() if n > 1]
    unknown = [key for key in stored if key not in sent]
    assert lost == [], f"{len(lost)} accepted readings lost: (device, value)"
    assert doubled == [], f"{len(doubled)} readings stored more than once: ((device, value), n)"
    assert unknown == [], "stored readings no device sent"


def test_a_retry_of_a_stored_batch_on_the_other_host_is_replayed(loaded):
    # An impatient first try (load.IMPATIENT_EVERY) or the kill left the batch stored on one
    # host without the device hearing so; the retry on the other host must replay that answer.
    replayed = [b for b in loaded.record.batches if b.replayed]
    assert replayed, "no retry met a stored batch: the cross-host retry was not exercised"
    assert any(b.tries[0][1] != b.tries[-1][1] for b in replayed), "no replay by the other host"


def test_every_due_schedule_fires_exactly_once(cluster, loaded):
    ids = list(loaded.expected_due)
    commands = select(Command.schedule_id, Command.due_at).where(Command.schedule_id.in_(ids))
    skipped = select(Schedule.id, Schedule.skipped_count).where(Schedule.id.in_(ids))
    with cluster.engine.connect() as conn:
        fired = Counter(tuple(row) for row in conn.execute(commands))
        skips = dict(conn.execute(skipped).all())
    t0 = datetime.fromtimestamp(loaded.t0, UTC)

    def offsets(times) -> list[float]:  # seconds after t0, to read the failure at a glance
        return sorted((at - t0).total_seconds() for at in times)

    missing = {
        schedule_id: offsets(at for at in times if (schedule_id, at) not in fired)
        for schedule_id, times in loaded.expected_due.items()
    }
    expected = {
        (schedule_id, at) for schedule_id, times in loaded.expected_due.items() for at in times
    }
    extra = {key: n for key, n in fired.items() if key not in expected or n > 1}
    assert {k: v for k, v in missing.items() if v} == {}, "due times never fired (s after t0)"
    assert extra == {}, "commands for no due time, or for one due time twice"
    assert {schedule_id: n for schedule_id, n in skips.items() if n} == {}, "skipped due times"


def test_no_command_is_handed_out_twice(cluster, loaded):
    handed = Counter(i for poll in loaded.record.polls for i in poll.command_ids)
    assert len(handed) > 10, "too few commands reached the devices to show anything"
    assert [i for i, n in handed.items() if n > 1] == [], "command ids handed out twice"
    owners = {i: poll.device_id for poll in loaded.record.polls for i in poll.command_ids}
    query = select(Command.id, Command.device_id, Command.attempts).where(
        Command.id.in_(list(owners))
    )
    with cluster.engine.connect() as conn:
        rows = conn.execute(query).all()
    assert [r.id for r in rows if r.device_id != owners[r.id]] == [], "sent to the wrong device"
    assert [r.id for r in rows if r.attempts != 1] == []


def test_the_kills_hit_mid_load_and_the_survivors_carried_on(cluster, loaded):
    web1, _ = cluster.web
    tries = [t for b in loaded.record.batches for t in b.tries]
    assert any(at < web1.killed_at and host == "web1" and out == "201" for at, host, out in tries)
    assert any(at > web1.killed_at and host == "web1" and out != "201" for at, host, out in tries)
    assert any(
        at > web1.killed_at + 1 and host == "web2" and out == "201" for at, host, out in tries
    )
    assert any(len(b.tries) > 1 and b.accepted for b in loaded.record.batches), "no failover"

    killed, survivor = loaded.killed_scheduler, loaded.surviving_scheduler
    killed_at = datetime.fromtimestamp(killed.killed_at, UTC)
    assert _fired_since(cluster, killed, loaded.t0) > 0, f"{killed.name} fired nothing"
    assert all(at < killed_at for at, _ in cluster.scheduler_passes(killed))
    later = killed_at + timedelta(seconds=2)
    after = [fired for at, fired in cluster.scheduler_passes(survivor) if at > later]
    assert sum(after) > 0, f"{survivor.name} fired nothing once {killed.name} was dead"

    in_flight = sum(
        1
        for at, host, out in tries
        if host == "web1" and out not in ("201", "refused", "ReadTimeout")
    )
    replays = sum(b.replayed for b in loaded.record.batches)
    print(
        f"\n{len(loaded.record.batches)} batches; {in_flight} uploads cut off by the kill of "
        f"web1, {replays} answered by replay; {killed.name} killed, "
        f"{survivor.name} fired {sum(after)} commands after"
    )
