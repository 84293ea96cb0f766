"""Login and logout as the contract describes them."""

import pytest

from portal.models import User
from tests import factories
from tests.conftest import csrf_token


def post_login(client, username, password, next_=None, token=None):
    data = {
        "username": username,
        "password": password,
        "csrf_token": token if token is not None else csrf_token(client),
    }
    if next_ is not None:
        data["next"] = next_
    return client.post("/login", data=data)


def test_good_login_redirects_to_the_admin(client, operator):
    response = post_login(client, "oscar", factories.PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"


def test_login_records_last_login(client, db, operator):
    post_login(client, "oscar", factories.PASSWORD)
    db.session.expire_all()
    assert db.session.get(User, operator.id).last_login_at is not None


@pytest.mark.parametrize(
    "username,password",
    [
        ("oscar", "wrong password"),
        ("nobody", factories.PASSWORD),
        ("", ""),
    ],
)
def test_bad_login_shows_the_form_again_with_one_generic_message(
    client, operator, username, password
):
    response = post_login(client, username, password)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Invalid username or password." in html
    assert 'name="password"' in html


def test_inactive_user_is_refused(client, db):
    factories.UserFactory(username="gone", active=False)
    response = post_login(client, "gone", factories.PASSWORD)
    assert response.status_code == 200
    assert "Invalid username or password." in response.get_data(as_text=True)
    assert client.get("/admin/devices/").status_code == 302


def test_login_without_csrf_token_is_rejected(client, operator):
    response = client.post("/login", data={"username": "oscar", "password": factories.PASSWORD})
    assert response.status_code == 400
    assert client.get("/admin/devices/").status_code == 302


@pytest.mark.parametrize(
    "next_,expected",
    [
        ("/admin/devices/", "/admin/devices/"),
        ("/admin/devices/?page=2", "/admin/devices/?page=2"),
        ("//evil.example", "/admin/"),
        ("https://evil.example/admin/", "/admin/"),
        ("/\\evil.example", "/admin/"),
        ("javascript:alert(1)", "/admin/"),
    ],
)
def test_next_is_followed_only_to_local_paths(client, operator, next_, expected):
    response = post_login(client, "oscar", factories.PASSWORD, next_=next_)
    assert response.status_code == 302
    assert response.headers["Location"] == expected


def test_anonymous_admin_request_goes_to_login_with_next(client):
    response = client.get("/admin/devices/?page=1")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/admin/devices/")


def test_login_page_carries_next_into_the_form(client):
    html = client.get("/login?next=/admin/commands/").get_data(as_text=True)
    assert 'value="/admin/commands/"' in html


def test_logout_needs_post_with_csrf(client, login_as, operator):
    login_as(operator)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    assert client.get("/admin/").status_code == 200
    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get("/admin/").status_code == 302


def test_session_cookie_is_httponly_and_samesite_lax(client, operator):
    response = post_login(client, "oscar", factories.PASSWORD)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_failed_logins_are_limited_per_user_name(app, client, operator):
    app.config["LOGIN_LIMIT"] = "3 per 15 minutes"
    for _ in range(3):
        assert post_login(client, "oscar", "wrong").status_code == 200
    response = post_login(client, "oscar", factories.PASSWORD)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0


def test_successful_logins_do_not_count_towards_the_limit(app, client, operator):
    app.config["LOGIN_LIMIT"] = "2 per 15 minutes"
    for _ in range(3):
        assert post_login(client, "oscar", factories.PASSWORD).status_code == 302
        client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")})


def test_html_pages_forbid_framing_and_sniffing(client):
    response = client.get("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


@pytest.mark.parametrize("username", ["a\x00b", "x" * 10_000, "名前"])
def test_a_username_no_one_can_have_is_a_plain_failed_login(client, operator, username):
    response = post_login(client, username, "whatever-password")
    assert response.status_code == 200
    assert "Invalid username or password." in response.get_data(as_text=True)
