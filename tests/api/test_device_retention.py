"""A device's own readings retention through the API: create, show, PATCH, bad values, docs."""

from __future__ import annotations

import pytest

from portal.models import Device


@pytest.fixture
def headers(headers_for, operator):
    return headers_for(operator)


def test_a_device_is_created_with_its_own_retention_and_shows_it(client, headers):
    response = client.post(
        "/api/v1/devices", json={"name": "boiler", "readings_retention_days": 30}, headers=headers
    )
    assert response.status_code == 201
    created = response.get_json()
    assert created["readings_retention_days"] == 30
    shown = client.get(f"/api/v1/devices/{created['id']}", headers=headers).get_json()
    assert shown["readings_retention_days"] == 30


def test_without_one_a_device_follows_the_installation_default(client, headers):
    created = client.post("/api/v1/devices", json={"name": "boiler"}, headers=headers).get_json()
    assert created["readings_retention_days"] is None


@pytest.mark.parametrize("value", [0, 7, 36500, None])
def test_patch_sets_forever_a_number_of_days_or_back_to_the_default(
    client, db, device, headers, value
):
    device.readings_retention_days = 12
    db.session.commit()
    response = client.patch(
        f"/api/v1/devices/{device.id}", json={"readings_retention_days": value}, headers=headers
    )
    assert response.status_code == 200
    assert response.get_json()["readings_retention_days"] == value
    db.session.expire_all()
    assert db.session.get(Device, device.id).readings_retention_days == value


def test_patch_without_the_field_leaves_it(client, db, device, headers):
    device.readings_retention_days = 12
    db.session.commit()
    client.patch(f"/api/v1/devices/{device.id}", json={"location": "Roof"}, headers=headers)
    db.session.expire_all()
    assert db.session.get(Device, device.id).readings_retention_days == 12


@pytest.mark.parametrize("value", [-1, 36501, 10**30, "30", True, 1.5, [], {}])
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_bad_retention_is_a_422_naming_the_field(client, device, headers, method, value):
    body = {"readings_retention_days": value}
    if method == "POST":
        response = client.post("/api/v1/devices", json={"name": "boiler", **body}, headers=headers)
    else:
        response = client.patch(f"/api/v1/devices/{device.id}", json=body, headers=headers)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == ["readings_retention_days"]


def test_a_viewer_cannot_change_it(client, device, headers_for, viewer):
    response = client.patch(
        f"/api/v1/devices/{device.id}",
        json={"readings_retention_days": 0},
        headers=headers_for(viewer),
    )
    assert response.status_code == 403


def test_the_openapi_document_describes_the_field(client):
    schemas = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    for name in ("DeviceIn", "DevicePatch", "DeviceOut"):
        field = schemas[name]["properties"]["readings_retention_days"]
        assert "0 = forever" in field["description"], name
    assert "readings_retention_days" in schemas["DeviceOut"]["required"]
