"""Running commands: each id runs at most once, across restarts; results are kept until reported."""

import time

import pytest

from portal_agent.client import Rejected, Unavailable
from portal_agent.handlers import RelayHandler
from portal_agent.ledger import CommandLedger
from portal_agent.queue import ReadingQueue
from portal_agent.runner import Agent


class StubPortal:
    """Stands in for PortalClient: records reports, or fails them while ``down``."""

    def __init__(self, commands=(), down=False, refuse=None):
        self.commands, self.down, self.refuse = list(commands), down, refuse
        self.reports = []

    def heartbeat(self, firmware=None):
        return {}

    def upload(self, readings, key):
        return len(readings)

    def poll(self, limit):
        return self.commands

    def report(self, command_id, status, result):
        if self.down:
            raise Unavailable("connection refused")
        if self.refuse:
            raise Rejected(self.refuse, {"error": {"code": "not_found", "message": "gone"}})
        self.reports.append((command_id, status, result))


class CountingHandler:
    def __init__(self):
        self.calls = []

    def __call__(self, action, payload):
        self.calls.append(action)
        return {"done": action}


def make_agent(state_dir, portal, handler):
    return Agent(
        portal,
        ReadingQueue(str(state_dir)),
        CommandLedger(str(state_dir)),
        source=list,
        handler=handler,
    )


COMMAND = {"id": 7, "action": "relay.on", "payload": {}}


def test_command_delivered_twice_runs_once_and_its_result_is_sent_twice(tmp_path):
    handler, portal = CountingHandler(), StubPortal()
    agent = make_agent(tmp_path, portal, handler)
    agent.handle(COMMAND)
    agent.handle(COMMAND)
    assert handler.calls == ["relay.on"]
    assert portal.reports == [(7, "succeeded", {"done": "relay.on"})] * 2


def test_command_seen_before_a_restart_is_not_run_again(tmp_path):
    first_handler = CountingHandler()
    make_agent(tmp_path, StubPortal(), first_handler).handle(COMMAND)
    handler, portal = CountingHandler(), StubPortal()
    make_agent(tmp_path, portal, handler).handle(COMMAND)
    assert handler.calls == []
    assert portal.reports == [(7, "succeeded", {"done": "relay.on"})]


def test_result_lost_on_the_way_is_sent_by_the_next_sync_without_running_again(tmp_path):
    handler = CountingHandler()
    with pytest.raises(Unavailable):
        make_agent(tmp_path, StubPortal(down=True), handler).handle(COMMAND)
    portal = StubPortal()
    make_agent(tmp_path, portal, handler).sync()
    assert handler.calls == ["relay.on"]
    assert portal.reports == [(7, "succeeded", {"done": "relay.on"})]


def test_reported_result_is_not_sent_again_by_the_next_sync(tmp_path):
    portal = StubPortal()
    agent = make_agent(tmp_path, portal, CountingHandler())
    agent.handle(COMMAND)
    agent.sync()
    assert len(portal.reports) == 1


def test_result_the_portal_refuses_for_good_is_not_sent_again(tmp_path):
    agent = make_agent(tmp_path, StubPortal(refuse=404), CountingHandler())
    agent.handle(COMMAND)
    portal = StubPortal()
    make_agent(tmp_path, portal, CountingHandler()).sync()
    assert portal.reports == []


def test_command_cut_short_by_a_crash_is_reported_failed_not_run_again(tmp_path):
    CommandLedger(str(tmp_path)).begin(7, "relay.on")  # the agent died inside the handler
    handler, portal = CountingHandler(), StubPortal()
    make_agent(tmp_path, portal, handler).handle(COMMAND)
    assert handler.calls == []
    [(command_id, status, result)] = portal.reports
    assert (command_id, status) == (7, "failed")
    assert "interrupted" in result["error"]


@pytest.mark.parametrize(
    "action, expected",
    [
        ("relay.on", ("succeeded", {"relay": "on"})),
        ("relay.off", ("succeeded", {"relay": "off"})),
        ("relay.toggle", ("succeeded", {"relay": "on"})),
        ("relay.status", ("succeeded", {"relay": "off"})),
    ],
)
def test_relay_actions_report_the_relay_state(tmp_path, action, expected):
    outcome = make_agent(tmp_path, StubPortal(), RelayHandler()).handle(
        {"id": 1, "action": action, "payload": {}}
    )
    assert (outcome.status, outcome.result) == expected


def test_relay_remembers_its_state_between_commands(tmp_path):
    agent = make_agent(tmp_path, StubPortal(), RelayHandler())
    agent.handle({"id": 1, "action": "relay.on"})
    assert agent.handle({"id": 2, "action": "relay.status"}).result == {"relay": "on"}


def test_unknown_action_is_reported_failed_with_a_message(tmp_path):
    outcome = make_agent(tmp_path, StubPortal(), RelayHandler()).handle(
        {"id": 1, "action": "valve.open", "payload": {}}
    )
    assert outcome.status == "failed"
    assert "unknown action 'valve.open'" in outcome.result["error"]


def test_handler_that_raises_is_reported_failed_with_the_error(tmp_path):
    def broken(action, payload):
        raise RuntimeError("relay board not found")

    outcome = make_agent(tmp_path, StubPortal(), broken).handle(COMMAND)
    assert (outcome.status, outcome.result) == (
        "failed",
        {"error": "RuntimeError: relay board not found"},
    )


@pytest.mark.parametrize(
    "returned, result", [(None, {}), (42, {"value": 42}), ({"a": 1}, {"a": 1})]
)
def test_handler_return_value_becomes_a_json_object(tmp_path, returned, result):
    outcome = make_agent(tmp_path, StubPortal(), lambda a, p: returned).handle(COMMAND)
    assert (outcome.status, outcome.result) == ("succeeded", result)


class RefusingPortal(StubPortal):
    def poll(self, limit):
        raise Rejected(422, {"error": {"code": "validation_error", "message": "limit"}})


def test_refused_poll_backs_off_instead_of_ending_the_agent(tmp_path):
    agent = make_agent(tmp_path, RefusingPortal(), CountingHandler())
    assert agent.run_once() is False


def test_relay_on_for_some_seconds_switches_itself_off(tmp_path):
    relay = RelayHandler()
    agent = make_agent(tmp_path, StubPortal(), relay)
    outcome = agent.handle({"id": 1, "action": "relay.on", "payload": {"seconds": 0.2}})
    assert outcome.status == "succeeded"
    assert outcome.result["relay"] == "on" and 0 < outcome.result["off_in"] <= 0.2
    deadline = time.monotonic() + 5
    while relay.on and time.monotonic() < deadline:
        time.sleep(0.02)
    assert agent.handle({"id": 2, "action": "relay.status"}).result == {"relay": "off"}


def test_a_later_command_cancels_the_relays_timer(tmp_path):
    relay = RelayHandler()
    agent = make_agent(tmp_path, StubPortal(), relay)
    agent.handle({"id": 1, "action": "relay.on", "payload": {"seconds": 0.1}})
    assert agent.handle({"id": 2, "action": "relay.on"}).result == {"relay": "on"}
    time.sleep(0.3)
    assert relay.on  # the first command's timer no longer switches it off


@pytest.mark.parametrize("seconds", [0, -5, "30", True, 86401, float("nan")])
def test_relay_refuses_seconds_it_cannot_keep(tmp_path, seconds):
    relay = RelayHandler()
    outcome = make_agent(tmp_path, StubPortal(), relay).handle(
        {"id": 1, "action": "relay.on", "payload": {"seconds": seconds}}
    )
    assert outcome.status == "failed" and "seconds must be" in outcome.result["error"]
    assert not relay.on
