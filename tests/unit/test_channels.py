"""Channel rules the alert code relies on: which channels a user may use, and their secrets."""

from __future__ import annotations

import pytest
from cryptography.fernet import InvalidToken

from portal.models import NotificationChannel, NotificationDelivery
from portal.services import channels, secret_box
from portal.services.errors import InvalidInput
from portal.services.users import delete_user
from tests import factories


@pytest.fixture
def own(operator):
    return factories.NotificationChannelFactory(owner=operator)


@pytest.fixture
def theirs(other_operator):
    return factories.NotificationChannelFactory(owner=other_operator)


def test_an_operator_may_use_their_own_channels(operator, own):
    assert channels.usable_channel_ids(operator, [own.id, own.id]) == [own.id]


def test_an_admin_may_use_any_channel(admin, own, theirs):
    assert channels.usable_channel_ids(admin, [theirs.id, own.id]) == [theirs.id, own.id]


@pytest.mark.parametrize("persona", ["operator", "viewer"])
def test_a_channel_out_of_use_reads_as_one_that_does_not_exist(request, own, theirs, persona):
    user = request.getfixturevalue(persona)
    with pytest.raises(InvalidInput) as caught:
        channels.usable_channel_ids(user, [theirs.id, 999_999])
    assert caught.value.fields == {"notify": f"No such channel: {theirs.id}, 999999."}


@pytest.mark.parametrize("value", ["7", 1.0, True, None])
def test_channel_ids_are_whole_numbers(operator, value):
    with pytest.raises(InvalidInput) as caught:
        channels.usable_channel_ids(operator, [value], field="channels")
    assert set(caught.value.fields) == {"channels"}


def test_no_channels_is_fine(operator):
    assert channels.usable_channel_ids(operator, []) == []


def test_the_secret_is_sealed_with_a_key_of_its_own(app, own):
    assert channels.channel_secret(own.secret) == own.clear_secret
    mqtt_key = secret_box.fernet("portal mqtt credentials")
    with pytest.raises(InvalidToken):
        mqtt_key.decrypt(own.secret)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/hook",
        "http://127.0.0.1:8080/x?y=1",
        "https://[::1]/hook",
    ],
)
def test_webhook_urls_are_http_or_https_with_a_host(url):
    assert channels.validate_url(f"  {url} ") == url


@pytest.mark.parametrize(
    "url",
    [
        "",
        "example.org/hook",
        "file:///etc/passwd",
        "https://ex\u00e4mple.org/",
        "http://a:0/",
        "h" * 2001,
    ],
)
def test_other_urls_are_refused(url):
    with pytest.raises(ValueError):
        channels.validate_url(url)


@pytest.mark.parametrize("address", ["ops@example.org", "a.b+c@mail.example.org", "root@localhost"])
def test_plain_addresses_are_taken(address):
    assert channels.validate_address(address) == address


@pytest.mark.parametrize(
    "address", ["", "ops", "ops@", "@example.org", "a@b@c", "Ops <ops@example.org>", "a b@c.org"]
)
def test_other_addresses_are_refused(address):
    with pytest.raises(ValueError):
        channels.validate_address(address)


def test_a_deleted_users_channels_and_deliveries_go_with_them(db, admin, operator, own):
    factories.NotificationDeliveryFactory(channel=own)
    delete_user(admin, operator)
    db.session.commit()
    db.session.expire_all()
    assert db.session.query(NotificationChannel).count() == 0
    assert db.session.query(NotificationDelivery).count() == 0
