"""What the bridge does with each kind of message: the HTTP rules, answered on down/acks."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Command, CommandStatus, Reading, utcnow
from portal.services.commands import enqueue_command
from tests.mqtt_stack import wait_for


def readings_of(device_id: int) -> int:
    db.session.rollback()
    return db.session.scalar(
        select(func.count()).select_from(Reading).where(Reading.device_id == device_id)
    )


def command_status(command_id: int) -> CommandStatus:
    db.session.rollback()
    return db.session.get(Command, command_id, populate_existing=True).status


def batch(n: int = 3, key: str | None = None, metric: str = "temperature") -> dict:
    body: dict = {"readings": [{"metric": metric, "value": float(i)} for i in range(n)]}
    if key is not None:
        body["key"] = key
    return body


def ack_for(board, topic: str, count: int = 1) -> list[dict]:
    return wait_for(
        lambda: (
            [a for a in board.acks() if a["topic"] == topic][:count]
            if len([a for a in board.acks() if a["topic"] == topic]) >= count
            else None
        ),
        what=f"{count} ack(s) on {topic}",
    )


def test_bad_messages_get_an_error_store_nothing_and_the_bridge_goes_on(mqtt_stack):
    device_id, token = mqtt_stack.add_device()
    board = mqtt_stack.device_client(device_id, token).connect()
    bad = [
        b"{not json",
        b"\xff\xfe\x00garbage",  # not UTF-8
        json.dumps({"readings": [{"metric": "Bad Metric!", "value": "warm"}]}).encode(),
        json.dumps({"readings": []}).encode(),
        json.dumps({"readings": [{"metric": "t", "value": 1}], "extra": 1}).encode(),
        json.dumps({"readings": [{"metric": "t", "value": 1}], "key": "\x01"}).encode(),
        b'{"readings": [{"metric": "t", "value": NaN}]}',
        b"[1, 2, 3]",
        b"",
        b"x" * (10 * 1024 * 1024),  # 10 MB
    ]
    for payload in bad:
        board.publish("readings", payload)
    errors = ack_for(board, "readings", len(bad))
    codes = [a["error"]["code"] for a in errors]
    assert codes == [
        "invalid_json",
        "invalid_json",
        "validation_error",
        "validation_error",
        "validation_error",
        "validation_error",
        "validation_error",  # NaN: as over HTTP, a value that is not a finite number
        "validation_error",
        "validation_error",
        "payload_too_large",
    ]
    assert errors[5]["key"] == "\x01"  # echoed as sent, though it is the bad field
    big = {"readings": [{"metric": "t", "value": 1.0}] * 1000, "key": "huge", "pad": "x" * 2**20}
    board.publish("readings", big)
    too_large = ack_for(board, "readings", len(bad) + 1)[-1]
    assert too_large["key"] == "huge" and too_large["error"]["code"] == "payload_too_large"
    fields = errors[2]["error"]["fields"]
    assert set(fields) == {"readings.0.metric", "readings.0.value"}
    assert readings_of(device_id) == 0

    board.publish("heartbeat", {"firmware": "x" * 65})
    board.publish("heartbeat", b"{")
    board.publish("nowhere", b"{}")
    board.publish("results/abc", {"status": "succeeded"})
    board.publish("status", b"sleepy")
    assert list(ack_for(board, "heartbeat", 2)[0]["error"]["fields"]) == ["firmware"]
    assert ack_for(board, "nowhere")[0]["error"]["code"] == "unknown_topic"
    assert ack_for(board, "results/abc")[0]["error"]["code"] == "unknown_topic"
    assert ack_for(board, "status")[0]["error"]["code"] == "validation_error"

    board.publish("readings", batch(2, key="good"))
    wait_for(lambda: any(a.get("key") == "good" for a in board.acks()), what="the good batch")
    assert readings_of(device_id) == 2


def test_a_key_stores_a_batch_once(mqtt_stack):
    device_id, token = mqtt_stack.add_device()
    board = mqtt_stack.device_client(device_id, token).connect()
    for _ in range(3):
        board.publish("readings", batch(5, key="batch-7"))
    acks = ack_for(board, "readings", 3)
    assert [a["accepted"] for a in acks] == [5, 5, 5]
    assert [a.get("replayed", False) for a in acks] == [False, True, True]
    assert readings_of(device_id) == 5
    # The same key with other readings within 24 h is a conflict, as over HTTP.
    board.publish("readings", batch(4, key="batch-7"))
    assert ack_for(board, "readings", 4)[3]["error"]["code"] == "idempotency_key_reused"
    assert readings_of(device_id) == 5


def test_heartbeat_status_and_last_seen(mqtt_stack):
    device_id, token = mqtt_stack.add_device()
    board = mqtt_stack.device_client(device_id, token).connect(online=False)
    board.publish("heartbeat", b"")
    board.publish("heartbeat", {"firmware": "2.1.0"})
    assert [a["accepted"] for a in ack_for(board, "heartbeat", 2)] == [1, 1]
    row = mqtt_stack.device_row(device_id)
    assert row.firmware == "2.1.0"
    assert row.mqtt_seen_at is not None and row.last_seen_at is not None
    assert row.http_seen_at is None
    assert row.mqtt_online is False
    board.publish("status", "online", retain=True)
    wait_for(lambda: mqtt_stack.device_row(device_id).mqtt_online, what="online")
    # Its will: a connection lost without a goodbye says offline.
    board.client._sock.close()  # a dropped link, not a goodbye
    wait_for(lambda: not mqtt_stack.device_row(device_id).mqtt_online, what="the will: offline")


def test_another_devices_topics_store_nothing(mqtt_stack):
    mine, my_token = mqtt_stack.add_device("mine")
    theirs, their_token = mqtt_stack.add_device("theirs")
    command = enqueue_command(None, theirs, "door.open")
    db.session.commit()
    board = mqtt_stack.device_client(mine, my_token).connect()
    # Published to their topics with my login: the broker drops it.
    board.client.publish(f"portal/dev-{theirs}/up/readings", json.dumps(batch(3)), qos=1)
    board.client.publish(
        f"portal/dev-{theirs}/up/results/{command.id}", json.dumps({"status": "failed"}), qos=1
    )
    # Their command, answered on my own topic: not found, as over HTTP.
    board.publish(f"results/{command.id}", {"status": "succeeded"})
    assert ack_for(board, f"results/{command.id}")[0]["error"]["code"] == "not_found"
    board.publish("readings", batch(1, key="mine"))
    wait_for(lambda: any(a.get("key") == "mine" for a in board.acks()), what="my batch")
    assert readings_of(theirs) == 0
    assert readings_of(mine) == 1
    assert command_status(command.id) is CommandStatus.queued

    # And their commands never reach me, even when I subscribe to their topics.
    board.client.subscribe(f"portal/dev-{theirs}/down/#", qos=1)
    them = mqtt_stack.device_client(theirs, their_token).connect()
    pushed = wait_for(lambda: them.commands(), what="their command")
    assert pushed[0]["id"] == command.id
    assert board.commands() == []


def test_offline_devices_get_their_commands_when_they_come_back(mqtt_stack):
    device_id, token = mqtt_stack.add_device()
    first = enqueue_command(None, device_id, "a.one")
    second = enqueue_command(None, device_id, "a.two")
    db.session.commit()
    board = mqtt_stack.device_client(device_id, token).connect(online=False)
    board.publish("heartbeat", b"")
    ack_for(board, "heartbeat")
    assert board.commands() == []  # not online: nothing pushed
    assert command_status(first.id) is CommandStatus.queued
    board.publish("status", "online", retain=True)
    pushed = wait_for(lambda: len(board.commands()) >= 2 and board.commands(), what="both")
    assert [c["id"] for c in pushed] == [first.id, second.id]
    assert command_status(first.id) is CommandStatus.delivered


def test_unanswered_commands_are_pushed_again_then_fail(mqtt_stack):
    device_id, token = mqtt_stack.add_device()
    board = mqtt_stack.device_client(device_id, token).connect()
    command = enqueue_command(None, device_id, "slow.job")
    db.session.commit()
    # Lease 2 s, 5 attempts: pushed 5 times in all, then failed for lack of a result.
    wait_for(lambda: command_status(command.id) is CommandStatus.failed, 30, "no_result")
    ids = [c["id"] for c in board.commands()]
    assert ids == [command.id] * 5
    db.session.rollback()
    row = db.session.get(Command, command.id, populate_existing=True)
    assert row.reason == "no_result" and row.attempts == 5


def test_expired_and_cancelled_commands_are_not_pushed(mqtt_stack):
    from portal.services.commands import cancel_command

    device_id, token = mqtt_stack.add_device()
    expired = enqueue_command(None, device_id, "too.late", expires_in=1)
    cancelled = enqueue_command(None, device_id, "never.mind")
    db.session.commit()
    cancel_command(None, cancelled)
    db.session.execute(
        Command.__table__.update()
        .where(Command.id == expired.id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    live = enqueue_command(None, device_id, "go.now")
    db.session.commit()
    board = mqtt_stack.device_client(device_id, token).connect()
    wait_for(lambda: board.commands(), what="the live command")
    assert [c["id"] for c in board.commands()] == [live.id]
    wait_for(lambda: command_status(expired.id) is CommandStatus.expired, what="expired")
    assert command_status(cancelled.id) is CommandStatus.cancelled


def test_results_are_idempotent_and_conflicts_are_answered(mqtt_stack):
    device_id, token = mqtt_stack.add_device()
    board = mqtt_stack.device_client(device_id, token).connect()
    command = enqueue_command(None, device_id, "relay.on")
    db.session.commit()
    wait_for(lambda: board.commands(), what="the command")
    topic = f"results/{command.id}"
    board.publish(topic, {"status": "succeeded", "result": {"ok": True}})
    board.publish(topic, {"status": "succeeded", "result": {"ok": True}})
    board.publish(topic, {"status": "failed"})
    board.publish(topic, {"status": "done"})
    acks = ack_for(board, topic, 4)
    assert acks[0] == {
        "topic": topic,
        "key": None,
        "accepted": 1,
        "id": command.id,
        "status": "succeeded",
    }
    assert acks[1]["status"] == "succeeded"
    assert acks[2]["error"]["code"] == "already_finished"
    assert acks[3]["error"]["code"] == "validation_error"
    assert command_status(command.id) is CommandStatus.succeeded


def test_a_message_that_breaks_the_handler_is_dropped_alone(mqtt_stack, monkeypatch, caplog):
    """A bug met by one message (forced here) costs that message only: the rest of its batch
    is stored and the bridge goes on."""
    from portal.mqtt import handlers

    real = handlers.handle_batch

    def broken_for_one_key(prefix, messages, *args, **kwargs):
        if any(b'"boom"' in payload for _topic, payload in messages):
            raise RuntimeError("a bug")
        return real(prefix, messages, *args, **kwargs)

    monkeypatch.setattr(handlers, "handle_batch", broken_for_one_key)
    device_id, token = mqtt_stack.add_device()
    board = mqtt_stack.device_client(device_id, token).connect(online=False)
    for key in ("a", "boom", "b", "c"):
        board.publish("readings", batch(2, key=key))
    wait_for(lambda: len(board.acks()) >= 3, what="the other batches")
    assert sorted(a["key"] for a in board.acks()) == ["a", "b", "c"]
    assert readings_of(device_id) == 6
    assert "it is dropped" in caplog.text
    board.publish("readings", batch(1, key="after"))
    wait_for(lambda: any(a["key"] == "after" for a in board.acks()), what="the bridge goes on")
