"""Server-side sessions (SECURITY.md, Sessions): a copy of a cookie opens nothing once its session
has ended, whichever way it ended, on every worker and after a restart."""

from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select

from portal.extensions import db as _db
from portal.models import AuditEvent, Role, UserSession, utcnow
from portal.services.users import update_user
from tests import factories
from tests.conftest import csrf_token, login, make_app


def copy_of(app, client):
    """Another browser holding a copy of ``client``'s session cookie."""
    other = app.test_client()
    other.set_cookie("session", client.get_cookie("session").value)
    return other


def opens_admin(client) -> bool:
    response = client.get("/admin/")
    assert response.status_code in (200, 302), response.status_code
    return response.status_code == 200


def api_status(client) -> int:
    return client.get("/api/v1/devices").status_code


def logout(client):
    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")})
    assert response.status_code == 302


def test_a_cookie_copied_before_logout_opens_nothing_after_it(app, client, operator):
    login(client, operator)
    copy = copy_of(app, client)
    assert opens_admin(copy) and api_status(copy) == 200

    logout(client)

    assert not opens_admin(copy)
    assert client.get("/admin/").headers["Location"].startswith("/login")
    assert api_status(copy) == 401


def test_a_session_survives_a_restart_of_the_web_process(app, client, operator, tmp_path):
    login(client, operator)
    restarted = make_app(tmp_path / "again", app.config["SQLALCHEMY_DATABASE_URI"])
    browser = restarted.test_client()
    browser.set_cookie("session", client.get_cookie("session").value)
    try:
        assert browser.get("/admin/").status_code == 200
    finally:
        with restarted.app_context():
            _db.engine.dispose()


def test_changing_ones_password_ends_the_other_sessions_but_not_this_one(app, client, operator):
    other_browser = login(app.test_client(), operator)
    login(client, operator)
    response = client.post(
        "/admin/account/",
        data={
            "csrf_token": csrf_token(client, "/admin/account/"),
            "timezone": "UTC",
            "locale": "",
            "current_password": factories.PASSWORD,
            "new_password": "a-new-password",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:500]

    assert opens_admin(client)
    assert not opens_admin(other_browser)


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"password": "reset-by-admin"}, "password_reset"),
        ({"active": False}, "deactivated"),
        ({"role": Role.viewer}, "role_changed"),
    ],
)
def test_an_admins_change_ends_every_session_of_the_user(
    app, client, db, admin, operator, change, reason
):
    login(client, operator)
    update_user(admin, operator, **change)
    db.session.commit()

    assert not opens_admin(client)
    ended = db.session.scalars(select(UserSession).where(UserSession.user_id == operator.id)).all()
    assert [s.end_reason for s in ended] == [reason]
    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "sessions_ended")
    ).one()
    assert (event.actor_name, event.object_id, event.changes["reason"][1]) == (
        "alice",
        str(operator.id),
        reason,
    )


def test_an_admin_changing_a_time_zone_ends_no_session(app, client, db, admin, operator):
    login(client, operator)
    update_user(admin, operator, timezone="Europe/Berlin")
    db.session.commit()

    assert opens_admin(client)


def test_a_session_idle_longer_than_the_setting_is_over(app, client, operator):
    login(client, operator)
    idle, start = app.config["SESSION_IDLE_MINUTES"], utcnow()
    with time_machine.travel(start + timedelta(minutes=idle - 1), tick=False):
        assert opens_admin(client)  # activity moves the idle window
    with time_machine.travel(start + timedelta(minutes=2 * idle - 2), tick=False):
        assert opens_admin(client)
    with time_machine.travel(start + timedelta(minutes=3 * idle - 1), tick=False):
        assert not opens_admin(client)


def test_a_session_ends_after_its_maximum_age_however_active(app, client, operator):
    app.config["SESSION_IDLE_MINUTES"] = 24 * 60
    login(client, operator)
    start = utcnow()
    for hours in range(20, app.config["SESSION_MAX_HOURS"], 20):
        with time_machine.travel(start + timedelta(hours=hours), tick=False):
            assert opens_admin(client)
    with time_machine.travel(start + timedelta(hours=app.config["SESSION_MAX_HOURS"], minutes=1)):
        assert not opens_admin(client)


def test_a_forged_session_key_opens_nothing(app, client, operator):
    login(client, operator)
    with client.session_transaction() as session:
        session["_sk"] = "not-a-real-key"

    assert not opens_admin(client)


def test_logins_and_logouts_are_audited(client, db, operator):
    login(client, operator)
    logout(client)

    actions = db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.object_id == str(operator.id))
    ).all()
    assert actions == ["login", "logout"]


def test_the_session_row_keeps_only_a_hash_of_the_key(client, db, operator):
    login(client, operator)
    with client.session_transaction() as session:
        key = session["_sk"]

    stored = db.session.scalars(select(UserSession.key_hash)).all()
    assert len(stored) == 1 and key not in stored[0] and len(stored[0]) == 64


def test_the_audit_view_filters_login_events(app, client, admin, operator):
    client.post(
        "/login",
        data={"username": "mallory", "password": "guess", "csrf_token": csrf_token(client)},
    )
    login(client, operator)
    logout(client)
    login(client, admin)

    failed = client.get("/admin/audit/?flt0_action_equals=login_failed").get_data(as_text=True)
    logins = client.get("/admin/audit/?flt0_action_equals=login").get_data(as_text=True)

    assert "mallory" in failed and "oscar" not in failed
    assert "oscar" in logins and "mallory" not in logins


def test_the_scheduler_pass_deletes_sessions_that_can_never_open_again(app, client, db, operator):
    from portal.scheduling.runner import tick

    login(client, operator)
    login(app.test_client(), operator)
    old = db.session.scalars(select(UserSession).order_by(UserSession.id)).first()
    old.last_seen_at = utcnow() - timedelta(hours=app.config["SESSION_MAX_HOURS"], minutes=1)
    old_id = old.id
    db.session.commit()

    tick()

    db.session.expire_all()
    remaining = db.session.scalars(select(UserSession.id)).all()
    assert len(remaining) == 1 and old_id not in remaining
