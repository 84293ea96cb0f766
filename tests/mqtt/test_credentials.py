"""Devices' broker logins in step with the portal: created, rotated, disabled, deleted; kept
while the broker is away; never a plaintext token at rest."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Device, MqttCredentialChange
from portal.services import mqtt_access
from portal.services.devices import (
    create_device,
    delete_device,
    rotate_device_token,
    update_device,
)
from tests import factories
from tests.conftest import bearer
from tests.mqtt_stack import DeviceClient, wait_for

REVOKED_WITHIN = 5.0  # seconds, the contract's promise


def device(device_id: int) -> Device:
    db.session.rollback()
    return db.session.get(Device, device_id, populate_existing=True)


def refused(stack, device_id: int, token: str) -> bool:
    client = DeviceClient(stack.broker.port, device_id, token)
    try:
        client.connect(online=False, timeout=5)
    except ConnectionRefusedError:
        return True
    finally:
        client.close()
    return False


def dropped_within(board: DeviceClient, seconds: float) -> float:
    started = time.monotonic()
    wait_for(lambda: not board.connected.is_set(), seconds, "the open connection to drop")
    return time.monotonic() - started


def test_a_new_device_can_log_in_with_its_token_only(mqtt_stack):
    device_id, token = mqtt_stack.add_device()
    board = mqtt_stack.device_client(device_id, token).connect()
    assert board.connected.is_set()
    assert refused(mqtt_stack, device_id, token + "x")
    # Its own client id only: a second login under another id is refused by the broker.
    other = DeviceClient(mqtt_stack.broker.port, device_id, token)
    other.client._client_id = b"someone-else"
    with pytest.raises(ConnectionRefusedError):
        other.connect(online=False, timeout=5)
    other.close()


def test_rotation_drops_the_old_token_at_once(mqtt_stack):
    device_id, old = mqtt_stack.add_device()
    board = mqtt_stack.device_client(device_id, old).connect()
    # Its "online" handled first: one still on its way after the change would be a later word.
    wait_for(lambda: device(device_id).mqtt_online, what="online")
    new = rotate_device_token(None, device(device_id))
    db.session.commit()
    assert dropped_within(board, REVOKED_WITHIN) < REVOKED_WITHIN
    mqtt_stack.wait_in_step(device_id)
    # A login the broker drops sends no will: the portal marks it offline itself, so nothing
    # is pushed to nobody until the board says online with its new token.
    assert not device(device_id).mqtt_online
    assert refused(mqtt_stack, device_id, old)
    fresh = mqtt_stack.device_client(device_id, new).connect()
    assert fresh.connected.is_set()


def test_disable_drops_and_enable_lets_back_in(mqtt_stack):
    device_id, token = mqtt_stack.add_device()
    board = mqtt_stack.device_client(device_id, token).connect()
    wait_for(lambda: device(device_id).mqtt_online, what="online")
    update_device(None, device(device_id), enabled=False)
    db.session.commit()
    dropped_within(board, REVOKED_WITHIN)
    mqtt_stack.wait_in_step(device_id)
    assert not device(device_id).mqtt_online
    assert refused(mqtt_stack, device_id, token)
    update_device(None, device(device_id), enabled=True)
    db.session.commit()
    mqtt_stack.wait_in_step(device_id)
    again = mqtt_stack.device_client(device_id, token).connect()
    assert again.connected.is_set()


def test_disable_through_the_api_patch(mqtt_stack):
    device_id, token = mqtt_stack.add_device()
    board = mqtt_stack.device_client(device_id, token).connect()
    person = factories.PersonalTokenFactory(user=mqtt_stack.owner)
    db.session.commit()
    response = mqtt_stack.app.test_client().patch(
        f"/api/v1/devices/{device_id}", json={"enabled": False}, headers=bearer(person.token)
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["enabled"] is False
    dropped_within(board, REVOKED_WITHIN)
    assert refused(mqtt_stack, device_id, token)


def test_delete_drops_forgets_the_login_and_its_retained_status(mqtt_stack):
    device_id, token = mqtt_stack.add_device()
    board = mqtt_stack.device_client(device_id, token).connect()
    wait_for(lambda: device(device_id).mqtt_online, what="online")
    delete_device(None, device(device_id))
    db.session.commit()
    dropped_within(board, REVOKED_WITHIN)
    wait_for(lambda: not mqtt_access.pending_devices([device_id]), what="the delete applied")
    assert refused(mqtt_stack, device_id, token)
    assert f"dev-{device_id}" not in mqtt_stack.broker.ctrl("listClients")
    assert f"dev-{device_id}" not in mqtt_stack.broker.ctrl("listRoles")


def test_changes_made_while_the_broker_is_away_are_applied_when_it_is_back(mqtt_stack):
    doomed_id, doomed_token = mqtt_stack.add_device("doomed")
    off_id, off_token = mqtt_stack.add_device("switched-off")
    turned_id, old_token = mqtt_stack.add_device("rotated")
    mqtt_stack.broker.stop()

    created, created_token = create_device(None, "born-offline", owner=mqtt_stack.owner)
    db.session.commit()
    created_id = created.id
    delete_device(None, device(doomed_id))
    db.session.commit()
    update_device(None, device(off_id), enabled=False)
    db.session.commit()
    new_token = rotate_device_token(None, device(turned_id))
    db.session.commit()
    time.sleep(1.5)  # the bridge tries, and fails, meanwhile
    pending = mqtt_access.pending_devices([created_id, doomed_id, off_id, turned_id])
    assert pending == {created_id, doomed_id, off_id, turned_id}
    assert mqtt_access.state(created_id) == mqtt_access.PENDING

    mqtt_stack.broker.start()
    for device_id in (created_id, doomed_id, off_id, turned_id):
        mqtt_stack.wait_in_step(device_id, timeout=20)
    assert refused(mqtt_stack, doomed_id, doomed_token)
    assert refused(mqtt_stack, off_id, off_token)
    assert refused(mqtt_stack, turned_id, old_token)
    assert mqtt_stack.device_client(turned_id, new_token).connect().connected.is_set()
    assert mqtt_stack.device_client(created_id, created_token).connect().connected.is_set()


def test_no_plaintext_token_at_rest(mqtt_stack):
    mqtt_stack.bridges[0].stop()  # so the change row (with its encrypted token) stays
    created, token = create_device(None, "secretive", owner=mqtt_stack.owner)
    db.session.commit()
    rows = db.session.execute(select(MqttCredentialChange)).scalars().all()
    assert len(rows) == 1 and rows[0].secret is not None
    assert token.encode() not in rows[0].secret
    assert token not in json.dumps(
        [[str(v) for v in row] for row in db.session.execute(select(Device.__table__)).all()]
    )
    mqtt_stack.start_bridge("bridge-again")
    mqtt_stack.wait_in_step(created.id)
    assert db.session.execute(select(MqttCredentialChange)).first() is None
    stored = mqtt_stack.broker.dynsec.read_text()
    assert f"dev-{created.id}" in stored
    assert token not in stored


def test_sync_removes_logins_of_devices_it_does_not_know(mqtt_stack):
    mqtt_stack.broker.ctrl("createClient", "dev-999999", "-p", "whatever", "-c", "dev-999999")
    device_id, _token = mqtt_stack.add_device()
    result = mqtt_stack.app.test_cli_runner().invoke(args=["mqtt", "sync"])
    assert result.exit_code == 0, result.output
    assert "1 login(s) of deleted devices removed" in result.output
    clients = mqtt_stack.broker.ctrl("listClients")
    assert "dev-999999" not in clients and f"dev-{device_id}" in clients


def test_sync_says_when_the_broker_is_away(mqtt_stack):
    mqtt_stack.broker.stop()
    result = mqtt_stack.app.test_cli_runner().invoke(args=["mqtt", "sync"])
    assert result.exit_code == 1
    assert "not in step" in result.output and "Traceback" not in result.output


def test_mqtt_commands_say_so_when_mqtt_is_off(runner):
    for args in (["mqtt", "sync"], ["mqtt", "run"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 1
        assert "MQTT is off: set PORTAL_MQTT_URL" in result.output


def test_a_token_that_cannot_be_decrypted_leaves_the_login_disabled(mqtt_stack):
    """The secret key changed while a new token waited for the broker: the broker must not keep
    accepting the old one."""
    device_id, old = mqtt_stack.add_device()
    mqtt_stack.bridges[0].stop()
    new = rotate_device_token(None, device(device_id))
    db.session.commit()
    bridge = mqtt_stack.bridge_process("bridge-other-key", PORTAL_SECRET_KEY="another-secret-key")
    try:
        wait_for(lambda: not mqtt_access.pending_devices([device_id]), 20, "the change applied")
    finally:
        bridge.terminate()
        output, _ = bridge.communicate(timeout=20)
    assert b"cannot be decrypted" in output
    assert refused(mqtt_stack, device_id, old)
    assert refused(mqtt_stack, device_id, new)
