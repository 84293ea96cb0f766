"""The agent against a live portal (real HTTP on 127.0.0.1), including server outages."""

import threading
import time

from portal_agent.queue import ReadingQueue
from tests.agent.conftest import LEASE_SECONDS, CountingSource, make_agent, wait_for


def test_readings_from_the_source_appear_in_the_portal(portal, run_agent, tmp_path):
    run_agent(make_agent(portal, tmp_path / "state", CountingSource(5)))
    assert wait_for(lambda: portal.values() == [0, 1, 2, 3, 4] or None, what="5 readings")


def test_heartbeat_records_the_firmware_version(portal, tmp_path):
    agent = make_agent(portal, tmp_path / "state", firmware="1.4.2")
    assert agent.run_once() is True
    assert portal.device().firmware == "1.4.2"


def test_queued_command_is_run_and_its_result_stored(portal, run_agent, tmp_path):
    from portal_agent.handlers import RelayHandler

    run_agent(make_agent(portal, tmp_path / "state", handler=RelayHandler()))
    command_id = portal.enqueue("relay.on")
    command = wait_for(lambda: portal.finished(command_id), what="the result")
    assert (command.status.value, command.result) == ("succeeded", {"relay": "on"})


def test_unknown_action_is_stored_as_failed_with_a_message(portal, run_agent, tmp_path):
    from portal_agent.handlers import RelayHandler

    run_agent(make_agent(portal, tmp_path / "state", handler=RelayHandler()))
    command_id = portal.enqueue("valve.open")
    command = wait_for(lambda: portal.finished(command_id), what="the result")
    assert command.status.value == "failed"
    assert "unknown action 'valve.open'" in command.result["error"]


def test_server_restart_mid_run_loses_no_readings_and_stores_none_twice(
    portal, run_agent, tmp_path
):
    total = 60
    source = CountingSource(total)
    run_agent(make_agent(portal, tmp_path / "state", source, interval=0.02, batch_size=3))
    wait_for(lambda: len(portal.values()) >= 10, what="the first readings")
    portal.server.stop()
    sent_before = source.sent
    wait_for(lambda: source.sent >= sent_before + 10, what="readings made while the portal is down")
    portal.server.start()
    wait_for(lambda: len(portal.values()) >= total, what="all readings")
    assert portal.values() == list(range(total))


def test_batch_stored_but_not_acknowledged_is_not_stored_again(portal, tmp_path):
    state = tmp_path / "state"
    crashed = make_agent(portal, state)
    crashed.queue.put([{"metric": "count", "value": v} for v in (1, 2, 3)])
    batch = crashed.queue.next_batch()
    crashed.client.upload(batch.readings, batch.key)  # the answer is lost: no ack
    crashed.queue.close()
    assert make_agent(portal, state).run_once() is True
    assert portal.values() == [1, 2, 3]


def test_lost_result_is_redelivered_but_the_command_runs_once(portal, run_agent, tmp_path):
    runs = []

    def handler(action, payload):
        runs.append(time.monotonic())
        portal.server.stop()  # the portal goes away before the result can be reported
        return {"ran": action}

    run_agent(make_agent(portal, tmp_path / "state", handler=handler))
    command_id = portal.enqueue("relay.on")
    wait_for(lambda: runs, what="the command to run")
    time.sleep(max(0.0, runs[0] + LEASE_SECONDS + 0.2 - time.monotonic()))  # the lease runs out
    portal.server.start()
    command = wait_for(lambda: portal.finished(command_id), what="the result")
    assert (command.status.value, command.result) == ("succeeded", {"ran": "relay.on"})
    assert command.attempts == 2
    assert len(runs) == 1


def test_rejected_token_keeps_readings_buffered(portal, tmp_path):
    agent = make_agent(portal, tmp_path / "state", CountingSource(1), token="dev_not-a-token")
    assert agent.run_once() is False
    assert (len(ReadingQueue(str(tmp_path / "state"))), portal.values()) == (1, [])


def test_readings_buffered_by_a_stopped_agent_are_sent_by_the_next_one(portal, tmp_path):
    state = tmp_path / "state"
    portal.server.stop()
    offline = make_agent(portal, state, CountingSource(3))
    for _ in range(3):
        offline.run_once()
    offline.queue.close()
    portal.server.start()
    assert make_agent(portal, state).run_once() is True
    assert portal.values() == [0, 1, 2]


def test_stop_event_ends_a_running_agent_promptly(portal, tmp_path):
    stop = threading.Event()
    agent = make_agent(portal, tmp_path / "state", interval=30)
    thread = threading.Thread(target=agent.run, args=(stop,))
    thread.start()
    wait_for(lambda: portal.device().last_seen_at, what="the first heartbeat")
    stop.set()
    thread.join(2)
    assert not thread.is_alive()
