"""API-only fixtures: bearer headers for people and devices, and a few row helpers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from portal.models import Command, Reading, utcnow
from tests import factories
from tests.conftest import bearer


@pytest.fixture
def headers_for(app):
    """``headers_for(user)``: an Authorization header with a fresh personal token."""
    return lambda user: bearer(factories.PersonalTokenFactory(user=user).token)


@pytest.fixture
def device_headers(device):
    return bearer(device.token)


@pytest.fixture
def other_device_headers(other_device):
    return bearer(other_device.token)


@pytest.fixture
def make_command(app):
    """``make_command(device, **fields)``: a queued command expiring in an hour."""

    def make(device, **fields):
        fields.setdefault("expires_at", utcnow() + timedelta(hours=1))
        return factories.CommandFactory(device=device, **fields)

    return make


def count(db, model) -> int:
    return db.session.query(model).count()


def readings_of(db, device) -> list[Reading]:
    return db.session.query(Reading).filter_by(device_id=device.id).order_by(Reading.id).all()


def command_row(db, command_id: int) -> Command:
    db.session.expire_all()
    return db.session.get(Command, command_id)
