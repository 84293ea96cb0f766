"""`flask users ...`, `flask devices create` and `flask demo`: output, exit codes, stored rows."""

import json

import pytest
from sqlalchemy import func, select

from portal.models import AuditEvent, Device, PersonalToken, Role, User
from portal.services.tokens import hash_token
from portal.services.users import authenticate


def test_users_create_with_password(runner, db):
    result = runner.invoke(
        args=["users", "create", "sam", "--role", "operator", "--password", "s3cret-pass"]
    )
    assert result.exit_code == 0, result.output
    user = db.session.execute(select(User).where(User.username == "sam")).scalar_one()
    assert user.role is Role.operator
    assert authenticate("sam", "s3cret-pass") is not None


def test_users_create_prompts_for_the_password(runner, db):
    result = runner.invoke(
        args=["users", "create", "pat", "--role", "viewer"], input="long-password\nlong-password\n"
    )
    assert result.exit_code == 0, result.output
    assert authenticate("pat", "long-password") is not None


def test_users_create_refuses_an_existing_name(runner, db, operator):
    result = runner.invoke(
        args=["users", "create", "oscar", "--role", "admin", "--password", "whatever-pass"]
    )
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert "Traceback" not in result.output
    assert db.session.get(User, operator.id).role is Role.operator


@pytest.mark.parametrize(
    "args,message",
    [
        (["users", "create", "x", "--role", "king", "--password", "long-enough"], "king"),
        (
            ["users", "create", "bad name!", "--role", "viewer", "--password", "long-enough"],
            "username",
        ),
        (["users", "create", "shorty", "--role", "viewer", "--password", "short"], "password"),
    ],
)
def test_users_create_bad_input_is_one_clear_line(runner, db, args, message):
    result = runner.invoke(args=args)
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert db.session.scalar(select(func.count()).select_from(User)) == 0


def test_users_token_prints_the_token_alone(runner, db, operator):
    result = runner.invoke(args=["users", "token", "oscar", "--label", "backup"])
    assert result.exit_code == 0
    token = result.stdout.strip()
    assert "\n" not in token and token.startswith("pp_")
    row = db.session.execute(select(PersonalToken)).scalar_one()
    assert row.token_hash == hash_token(token) and row.label == "backup"


def test_users_token_for_unknown_user_fails_cleanly(runner, db):
    result = runner.invoke(args=["users", "token", "ghost"])
    assert result.exit_code == 1 and "No user named 'ghost'" in result.output


def test_devices_create_prints_one_json_object(runner, db, operator):
    result = runner.invoke(
        args=["devices", "create", "boiler", "--owner", "oscar", "--kind", "esp32"]
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body) == {"id", "name", "token"} and body["name"] == "boiler"
    device = db.session.get(Device, body["id"])
    assert device.owner_id == operator.id and device.kind == "esp32"
    assert device.token_hash == hash_token(body["token"])


@pytest.mark.parametrize(
    "args,message",
    [
        (["devices", "create", "x", "--owner", "ghost"], "ghost"),
        (["devices", "create", "x", "--owner", "oscar", "--kind", "Not A Kind!"], "kind"),
    ],
)
def test_devices_create_bad_input_fails_cleanly(runner, db, operator, args, message):
    result = runner.invoke(args=args)
    assert result.exit_code == 1 and message in result.output
    assert db.session.scalar(select(func.count()).select_from(Device)) == 0


def test_devices_create_refuses_a_taken_name(runner, db, device):
    result = runner.invoke(args=["devices", "create", device.name, "--owner", "oscar"])
    assert result.exit_code == 1 and "already exists" in result.output


def test_cli_changes_are_audited_as_cli(runner, db, operator):
    runner.invoke(args=["devices", "create", "boiler", "--owner", "oscar"])
    event = db.session.execute(select(AuditEvent)).scalar_one()
    assert (event.action, event.object_type, event.via) == ("create", "device", "cli")


def test_ensure_admin_creates_one_admin_once(runner, db):
    first = runner.invoke(args=["users", "ensure-admin"])
    assert first.exit_code == 0 and "password:" in first.output
    password = first.output.split("password:")[1].split()[0]
    assert authenticate("admin", password).role is Role.admin
    second = runner.invoke(args=["users", "ensure-admin"])
    assert second.exit_code == 0 and second.output == ""


def test_demo_is_idempotent(runner, db, app):
    runner.invoke(args=["users", "ensure-admin"])
    first = runner.invoke(args=["demo"])
    assert first.exit_code == 0, first.output
    counts = db.session.scalar(select(func.count()).select_from(Device))
    second = runner.invoke(args=["demo"])
    assert second.exit_code == 0
    assert db.session.scalar(select(func.count()).select_from(Device)) == counts >= 3
    # The demo's readings reach the roll-ups the 7-day, 30-day and 1-year charts read.
    from portal.models import HourlyRollup, Reading

    readings = db.session.scalar(select(func.count()).select_from(Reading))
    folded = db.session.scalar(select(func.sum(HourlyRollup.count)))
    assert readings and folded == readings
