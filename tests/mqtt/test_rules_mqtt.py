"""Threshold rules judge readings that arrive over MQTT, through the bridge (AUTOMATION.md:
"checked where readings are stored (HTTP and MQTT alike)"), in reading-time order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from portal.extensions import db
from portal.models import Alert, AlertState, Command, CommandSource, NotificationDelivery
from portal.services import rules
from tests import factories
from tests.mqtt_stack import wait_for

T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def ts(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def temperatures(key: str, *points: tuple[int, float]) -> dict:
    """A readings message: ``(seconds after T0, value)`` each, in the order given."""
    return {
        "key": key,
        "readings": [{"metric": "temperature", "value": v, "ts": ts(s)} for s, v in points],
    }


def acked(board, key: str) -> bool:
    return any(a.get("key") == key and a.get("accepted") for a in board.acks())


def alerts_of(rule_id: int) -> list[Alert]:
    db.session.rollback()
    return list(
        db.session.execute(
            select(Alert)
            .where(Alert.rule_id == rule_id)
            .order_by(Alert.id)
            .execution_options(populate_existing=True)
        ).scalars()
    )


def rule_commands(device_id: int) -> list[tuple[str, dict]]:
    db.session.rollback()
    return [
        (c.action, c.payload)
        for c in db.session.execute(
            select(Command)
            .where(Command.device_id == device_id, Command.source == CommandSource.rule)
            .order_by(Command.id)
        ).scalars()
    ]


def events() -> list[str]:
    db.session.rollback()
    query = select(NotificationDelivery.event).order_by(NotificationDelivery.id)
    return list(db.session.execute(query).scalars())


def test_readings_over_mqtt_raise_and_clear_a_threshold_alert(mqtt_stack):
    device_id, token = mqtt_stack.add_device("greenhouse", kind="esp32")
    channel = factories.NotificationChannelFactory(owner=mqtt_stack.owner, name="ops hook")
    rule = rules.create_rule(
        None,
        owner=mqtt_stack.owner,
        name="greenhouse too hot",
        kind="threshold",
        device_id=device_id,
        metric="temperature",
        op=">",
        value=30,
        clear_value=27,
        on_raise={"action": "fan.on", "payload": {"speed": 2}},
        on_clear={"action": "fan.off"},
        notify=[channel.id],
    )
    db.session.commit()
    rule_id = rule.id
    board = mqtt_stack.device_client(device_id, token).connect()
    wait_for(lambda: mqtt_stack.device_row(device_id).mqtt_online, what="the device online")

    # Rising in reading time, not in arrival order: the first reading over 30 in time (31.0)
    # raises the alert; judged as they arrive, 32.5 would have.
    board.publish("readings", temperatures("rise", (20, 32.5), (0, 25.0), (10, 31.0)))
    wait_for(lambda: acked(board, "rise"), what="the rising readings' ack")
    (alert,) = alerts_of(rule_id)
    assert (alert.state, alert.device_id, alert.value) == (AlertState.active, device_id, 31.0)
    assert rule_commands(device_id) == [("fan.on", {"speed": 2})]
    assert events() == ["alert.raised"]
    pushed = wait_for(board.commands, 5, "fan.on pushed to the device")
    assert [(c["action"], c["payload"]) for c in pushed] == [("fan.on", {"speed": 2})]

    # Under the threshold but not under clear_value: the alert stays active.
    board.publish("readings", temperatures("cooler", (30, 28.0)))
    wait_for(lambda: acked(board, "cooler"), what="the cooler reading's ack")
    assert [a.state for a in alerts_of(rule_id)] == [AlertState.active]
    assert len(rule_commands(device_id)) == 1

    board.publish("readings", temperatures("cool", (40, 26.0)))
    wait_for(lambda: acked(board, "cool"), what="the cool reading's ack")
    (alert,) = alerts_of(rule_id)
    assert alert.state is AlertState.resolved
    assert rule_commands(device_id) == [("fan.on", {"speed": 2}), ("fan.off", {})]
    assert events() == ["alert.raised", "alert.resolved"]
    wait_for(lambda: len(board.commands()) == 2, 5, "fan.off pushed to the device")
    assert [c["action"] for c in board.commands()] == ["fan.on", "fan.off"]
