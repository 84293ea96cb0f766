"""Two-factor login (SECURITY.md): TOTP with replay protection, recovery codes, the second
step's throttling, PORTAL_REQUIRE_2FA, and the CLI's reset."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
import time_machine
from sqlalchemy import select

from portal.models import AuditEvent, RecoveryCode, User, UserSession, utcnow
from portal.services.errors import InvalidInput
from portal.services.second_factor import begin_enrolment, check_second_factor, confirm_enrolment
from tests import factories
from tests.conftest import csrf_token


def enrol(db, user) -> tuple[pyotp.TOTP, list[str]]:
    """Turn the second factor on for ``user``; its TOTP and recovery codes."""
    totp = pyotp.TOTP(begin_enrolment(user))
    codes = confirm_enrolment(user, totp.at(utcnow() - timedelta(seconds=30)))
    db.session.commit()
    return totp, codes


def password_step(client, user, password=factories.PASSWORD):
    return client.post(
        "/login",
        data={"username": user.username, "password": password, "csrf_token": csrf_token(client)},
    )


def code_step(client, code: str):
    token = csrf_token(client, "/login/second-factor")
    return client.post("/login/second-factor", data={"code": code, "csrf_token": token})


def test_the_password_step_alone_opens_nothing(client, db, operator):
    enrol(db, operator)

    response = password_step(client, operator)

    assert response.status_code == 302
    assert response.headers["Location"] == "/login/second-factor"
    assert client.get("/admin/").status_code == 302
    assert client.get("/api/v1/devices").status_code == 401
    assert db.session.scalars(select(UserSession)).all() == []


def test_password_then_code_logs_in(client, db, operator):
    totp, _ = enrol(db, operator)
    password_step(client, operator)

    response = code_step(client, totp.now())

    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_a_code_is_accepted_once(app, client, db, operator):
    totp, _ = enrol(db, operator)
    code = totp.now()
    password_step(client, operator)
    assert code_step(client, code).status_code == 302

    other = app.test_client()
    password_step(other, operator)
    response = code_step(other, code)

    assert response.status_code == 200
    assert "Invalid code." in response.get_data(as_text=True)
    assert other.get("/admin/").status_code == 302


@pytest.mark.parametrize("offset,accepted", [(-60, False), (-30, True), (30, True), (60, False)])
def test_codes_of_one_step_either_side_are_accepted(db, operator, offset, accepted):
    totp = pyotp.TOTP(begin_enrolment(operator))
    start = utcnow()
    confirm_enrolment(operator, totp.at(start), now=start)
    operator.totp_last_step = None  # judge only the window here, not replay
    now = start + timedelta(minutes=10)

    assert check_second_factor(operator, totp.at(now + timedelta(seconds=offset)), now) is accepted


def test_a_recovery_code_works_once(app, client, db, operator):
    _, codes = enrol(db, operator)
    password_step(client, operator)
    assert code_step(client, codes[3]).status_code == 302

    other = app.test_client()
    password_step(other, operator)
    assert code_step(other, codes[3]).status_code == 200
    assert code_step(other, codes[4].upper()).status_code == 302


def test_recovery_codes_are_ten_and_stored_hashed(db, operator):
    _, codes = enrol(db, operator)
    stored = db.session.scalars(select(RecoveryCode.code_hash)).all()

    assert len(codes) == len(set(codes)) == 10 == len(stored)
    assert not set(codes) & set(stored)


def test_a_wrong_enrolment_code_leaves_the_second_factor_off(db, operator):
    totp, now = pyotp.TOTP(begin_enrolment(operator)), utcnow()
    window = {totp.at(now + timedelta(seconds=s)) for s in (-30, 0, 30)}
    wrong = next(code for code in ("000000", "111111", "222222") if code not in window)

    with pytest.raises(InvalidInput) as raised:
        confirm_enrolment(operator, wrong, now=now)

    assert "code" in raised.value.fields
    assert not operator.has_second_factor


def test_the_second_step_is_throttled_per_user(app, client, db, operator):
    app.config["LOGIN_LIMIT"] = "3 per 15 minutes"
    enrol(db, operator)
    password_step(client, operator)
    statuses = [code_step(client, "123456").status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    actions = db.session.scalars(select(AuditEvent.action)).all()
    assert actions.count("second_factor_failed") == 3 and "login_throttled" in actions
    throttled = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "login_throttled")
    ).one()
    assert throttled.actor_name == "oscar"


def test_an_old_password_step_expires(client, db, operator):
    totp, _ = enrol(db, operator)
    password_step(client, operator)
    with time_machine.travel(utcnow() + timedelta(minutes=6)):
        response = client.get("/login/second-factor")
        assert response.status_code == 302 and response.headers["Location"] == "/login"


def test_required_for_admins_sends_an_unenrolled_admin_to_enrolment_only(
    app, client, db, admin, operator
):
    app.config["REQUIRE_2FA"] = "admin"
    response = password_step(client, admin)

    assert response.headers["Location"] == "/admin/account/second-factor/"
    assert client.get("/admin/devices/").headers["Location"] == "/admin/account/second-factor/"
    assert client.get("/api/v1/devices").status_code == 403
    assert client.get("/admin/account/second-factor/").status_code == 200

    operator_client = app.test_client()
    assert password_step(operator_client, operator).headers["Location"] == "/admin/"


def test_cli_reset_2fa_turns_it_off_and_ends_the_sessions(app, runner, client, db, operator):
    totp, _ = enrol(db, operator)
    password_step(client, operator)
    code_step(client, totp.now())
    assert client.get("/admin/").status_code == 200

    result = runner.invoke(args=["users", "reset-2fa", "oscar"])

    assert result.exit_code == 0, result.output
    db.session.expire_all()
    user = db.session.get(User, operator.id)
    assert not user.has_second_factor and user.totp_secret is None
    assert client.get("/admin/").status_code == 302
    assert db.session.scalars(select(RecoveryCode)).all() == []


def test_cli_reset_2fa_of_a_user_without_one_is_a_clear_error(runner, operator):
    result = runner.invoke(args=["users", "reset-2fa", "oscar"])
    assert result.exit_code == 1 and "has no second factor" in result.output


def login_password_only(client, user):
    response = password_step(client, user)
    assert response.headers["Location"] == "/admin/"


def test_enrolment_on_the_account_page_shows_a_qr_code_and_the_secret(client, db, operator):
    login_password_only(client, operator)
    page = client.get("/admin/account/second-factor/")
    html = page.get_data(as_text=True)
    db.session.expire_all()
    secret = db.session.get(User, operator.id).totp_secret

    assert page.status_code == 200
    assert "<svg" in html and secret in html
    assert "<script" not in html.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert "script-src 'self' 'nonce-" in page.headers["Content-Security-Policy"]

    confirm = client.post(
        "/admin/account/second-factor/",
        data={
            "code": pyotp.TOTP(secret).now(),
            "csrf_token": csrf_token(client, "/admin/account/"),
        },
    )
    codes = re.findall(r"<code>([a-z0-9]{5}-[a-z0-9]{5})</code>", confirm.get_data(as_text=True))

    assert confirm.status_code == 200 and len(codes) == 10
    db.session.expire_all()
    assert db.session.get(User, operator.id).has_second_factor
    assert client.get("/admin/account/second-factor/").status_code == 302  # on already


def test_a_wrong_code_on_the_account_page_is_a_form_error(client, db, operator):
    login_password_only(client, operator)
    client.get("/admin/account/second-factor/")
    response = client.post(
        "/admin/account/second-factor/",
        data={"code": "12", "csrf_token": csrf_token(client, "/admin/account/")},
    )

    assert response.status_code == 200
    assert "does not match" in response.get_data(as_text=True)
    db.session.expire_all()
    assert not db.session.get(User, operator.id).has_second_factor


def test_turning_it_off_needs_a_current_code(client, db, operator):
    totp, _ = enrol(db, operator)
    password_step(client, operator)
    code_step(client, totp.now())
    token = csrf_token(client, "/admin/account/")

    client.post("/admin/account/second-factor/off", data={"code": "000000", "csrf_token": token})
    db.session.expire_all()
    assert db.session.get(User, operator.id).has_second_factor

    with time_machine.travel(utcnow() + timedelta(seconds=31)):
        client.post(
            "/admin/account/second-factor/off", data={"code": totp.now(), "csrf_token": token}
        )
    db.session.expire_all()
    assert not db.session.get(User, operator.id).has_second_factor
    events = db.session.scalars(select(AuditEvent.action)).all()
    assert "second_factor_on" in events and "second_factor_off" in events


def test_log_out_everywhere_ends_this_and_every_other_session(app, client, db, operator):
    other = app.test_client()
    login_password_only(other, operator)
    login_password_only(client, operator)
    assert "Log out everywhere" in client.get("/admin/account/").get_data(as_text=True)

    response = client.post(
        "/admin/account/logout-everywhere",
        data={"csrf_token": csrf_token(client, "/admin/account/")},
    )

    assert response.headers["Location"] == "/login"
    assert client.get("/admin/").status_code == 302
    assert other.get("/admin/").status_code == 302
    assert other.get("/api/v1/devices").status_code == 401
