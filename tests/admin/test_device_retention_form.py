"""A device's own readings retention in the admin's device form."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.models import Device
from tests.conftest import csrf_token


def post_form(client, path, data):
    data = {**data, "csrf_token": csrf_token(client, path)}
    return client.post(path, data=data, follow_redirects=True)


def stored(db, name: str) -> Device | None:
    db.session.expire_all()
    return db.session.execute(select(Device).where(Device.name == name)).scalar_one_or_none()


def test_the_form_offers_the_field_and_says_what_empty_means(client, login_as, operator):
    login_as(operator)
    html = client.get("/admin/devices/new/").get_data(as_text=True)
    assert 'name="readings_retention_days"' in html
    assert "Empty: the installation's default. 0: keep them forever." in html


@pytest.mark.parametrize("typed, kept", [("30", 30), ("0", 0), ("", None)])
def test_a_device_is_created_with_the_retention_typed(client, db, login_as, operator, typed, kept):
    login_as(operator)
    post_form(
        client,
        "/admin/devices/new/",
        {"name": "boiler", "kind": "esp32", "readings_retention_days": typed},
    )
    assert stored(db, "boiler").readings_retention_days == kept


def test_emptying_the_field_goes_back_to_the_default(client, db, login_as, operator, device):
    device.readings_retention_days = 14
    db.session.commit()
    login_as(operator)
    post_form(
        client,
        f"/admin/devices/edit/?id={device.id}",
        {"name": device.name, "kind": "esp32", "enabled": "y", "readings_retention_days": ""},
    )
    assert stored(db, device.name).readings_retention_days is None


RANGE = "A whole number of days from 0 (keep forever) to 36500"
NOT_A_NUMBER = "Not a valid integer value."


@pytest.mark.parametrize(
    "typed, error",
    [
        ("-1", RANGE),
        ("36501", RANGE),
        ("ninety", NOT_A_NUMBER),
        ("1.5", NOT_A_NUMBER),
        ("9" * 5000, NOT_A_NUMBER),
    ],
)
def test_a_bad_retention_is_a_form_error_not_a_crash(client, db, login_as, operator, typed, error):
    login_as(operator)
    response = post_form(
        client,
        "/admin/devices/new/",
        {"name": "boiler", "kind": "esp32", "readings_retention_days": typed},
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert error in html
    assert stored(db, "boiler") is None
