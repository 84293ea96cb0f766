"""Personal tokens on the account page: everyone makes and revokes their own, a viewer only
``read`` ones; the token is shown once and works against the API (SECURITY.md, Tokens)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.models import AuditEvent, PersonalToken, TokenScope, utcnow
from portal.services.tokens import MAX_LIVE_TOKENS, hash_token
from tests import factories
from tests.conftest import bearer, csrf_token

ACCOUNT = "/admin/account/"
CREATE = "/admin/account/tokens/"
TRACEBACK = "Traceback (most recent call last)"


def revoke_url(token_id: int | str) -> str:
    return f"/admin/account/tokens/{token_id}/revoke"


def create(client, **form):
    data = {"label": "backup", "scope": "read", **form, "csrf_token": csrf_token(client, ACCOUNT)}
    return client.post(CREATE, data=data)


def shown_token(html: str) -> str | None:
    match = re.search(r'data-testid="new-token">([^<]+)<', html)
    return match.group(1) if match else None


def tokens_of(db, user) -> list[PersonalToken]:
    return db.session.scalars(select(PersonalToken).where(PersonalToken.user_id == user.id)).all()


@pytest.fixture(params=["operator", "viewer"])
def person(request):
    """An operator, then a viewer: the people the account page gives tokens to."""
    return request.getfixturevalue(request.param)


def test_a_person_makes_a_token_shown_once_that_reads_the_api(client, db, login_as, person):
    login_as(person)
    response = create(client, label="backup")
    token = shown_token(response.get_data(as_text=True))

    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    [row] = tokens_of(db, person)
    assert (row.token_hash, row.label, row.scope) == (hash_token(token), "backup", TokenScope.read)
    assert client.get("/api/v1/devices", headers=bearer(token)).status_code == 200
    page = client.get(ACCOUNT).get_data(as_text=True)
    assert token not in page and row.token_prefix in page and "backup" in page


def test_an_operators_full_token_writes_and_a_read_token_may_not(client, login_as, operator):
    login_as(operator)
    full = shown_token(create(client, scope="full").get_data(as_text=True))
    read = shown_token(create(client, scope="read").get_data(as_text=True))

    body = {"name": "made-by-token", "kind": "sensor"}
    assert client.post("/api/v1/devices", json=body, headers=bearer(full)).status_code == 201
    response = client.post("/api/v1/devices", json=body, headers=bearer(read))
    assert response.status_code == 403


def test_a_token_may_expire(client, db, login_as, operator):
    login_as(operator)
    create(client, expires_days="30")

    [row] = tokens_of(db, operator)
    assert 29 < (row.expires_at - utcnow()).total_seconds() / 86400 <= 30


def test_a_viewer_is_offered_only_read_and_refused_full(client, db, login_as, viewer):
    login_as(viewer)
    page = client.get(ACCOUNT).get_data(as_text=True)
    response = create(client, scope="full")

    assert 'value="read"' in page and 'value="full"' not in page
    html = response.get_data(as_text=True)
    assert shown_token(html) is None and "A viewer&#39;s token may only read." in html
    assert tokens_of(db, viewer) == []


def test_a_person_revokes_their_token_and_it_stops_at_once(client, db, login_as, person):
    row = factories.PersonalTokenFactory(user=person, scope=TokenScope.read)
    login_as(person)

    response = client.post(revoke_url(row.id), data={"csrf_token": csrf_token(client, ACCOUNT)})

    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(PersonalToken, row.id).revoked_at is not None
    assert client.get("/api/v1/devices", headers=bearer(row.token)).status_code == 401
    assert row.token_prefix not in client.get(ACCOUNT).get_data(as_text=True)


def test_making_and_revoking_are_audited_as_the_person(client, db, login_as, person):
    login_as(person)
    create(client)
    [row] = tokens_of(db, person)
    client.post(revoke_url(row.id), data={"csrf_token": csrf_token(client, ACCOUNT)})

    events = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.object_type == "personal_token", AuditEvent.object_id == str(row.id))
        .order_by(AuditEvent.id)
    ).all()
    assert [(e.action, e.actor_id) for e in events] == [
        ("create", person.id),
        ("revoke", person.id),
    ]


def test_a_person_sees_no_one_elses_tokens(client, login_as, person, other_operator, admin):
    theirs = [
        factories.PersonalTokenFactory(user=other_operator, label="olgas-script"),
        factories.PersonalTokenFactory(user=admin, label="alices-script"),
    ]
    login_as(person)
    page = client.get(ACCOUNT).get_data(as_text=True)

    for row in theirs:
        assert row.label not in page and row.token_prefix not in page


def test_a_person_cannot_revoke_someone_elses_token(client, db, login_as, person, other_operator):
    row = factories.PersonalTokenFactory(user=other_operator)
    login_as(person)

    response = client.post(revoke_url(row.id), data={"csrf_token": csrf_token(client, ACCOUNT)})

    assert response.status_code == 404
    db.session.expire_all()
    assert db.session.get(PersonalToken, row.id).revoked_at is None


def test_revoking_needs_the_csrf_token(client, db, login_as, operator):
    row = factories.PersonalTokenFactory(user=operator)
    login_as(operator)

    assert client.post(revoke_url(row.id)).status_code == 400
    db.session.expire_all()
    assert db.session.get(PersonalToken, row.id).revoked_at is None


def test_making_needs_the_csrf_token(client, db, login_as, operator):
    login_as(operator)

    assert client.post(CREATE, data={"label": "x", "scope": "read"}).status_code == 400
    assert tokens_of(db, operator) == []


def test_anonymous_people_are_sent_to_log_in(client, db, operator):
    row = factories.PersonalTokenFactory(user=operator)
    token = csrf_token(client)

    response = client.post(revoke_url(row.id), data={"csrf_token": token})

    assert response.status_code == 302 and "/login" in response.headers["Location"]
    db.session.expire_all()
    assert db.session.get(PersonalToken, row.id).revoked_at is None


@pytest.mark.parametrize(
    "form",
    [
        {"expires_days": "abc"},
        {"expires_days": "0"},
        {"expires_days": "1e3"},
        {"expires_days": "99999999999999999999999"},
        {"label": "a\x00b"},
        {"label": "x" * 101},
        {"label": "x" * 10_000},
        {"scope": "write"},
        {"scope": ""},
    ],
)
def test_junk_in_the_form_makes_no_token_and_no_500(client, db, login_as, operator, form):
    login_as(operator)
    response = create(client, **form)

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert TRACEBACK not in html and shown_token(html) is None
    assert tokens_of(db, operator) == []


@pytest.mark.parametrize("token_id", ["0", "2147483648", "99999999999999999999", "x", "-1"])
def test_junk_token_ids_are_404_not_500(client, login_as, operator, token_id):
    login_as(operator)

    response = client.post(revoke_url(token_id), data={"csrf_token": csrf_token(client, ACCOUNT)})

    assert response.status_code == 404


def test_a_person_has_at_most_so_many_live_tokens(client, db, login_as, operator):
    for _ in range(MAX_LIVE_TOKENS):
        factories.PersonalTokenFactory(user=operator)
    factories.PersonalTokenFactory(user=operator, revoked_at=utcnow())  # does not count
    login_as(operator)

    html = create(client).get_data(as_text=True)

    assert shown_token(html) is None and "revoke one first" in html
    assert len(tokens_of(db, operator)) == MAX_LIVE_TOKENS + 1


def test_the_account_page_links_to_the_api_documentation(client, login_as, viewer):
    login_as(viewer)
    html = client.get(ACCOUNT).get_data(as_text=True)

    assert 'href="/api/v1/docs"' in html
