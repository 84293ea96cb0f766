"""Readings and commands lists stop counting at a cap, so big tables stay fast."""

import pytest

from portal.admin.people import AuditView
from portal.admin.records import CommandView, ReadingView
from tests import factories


@pytest.fixture
def small_cap(monkeypatch):
    monkeypatch.setattr(ReadingView, "count_cap", 3)
    monkeypatch.setattr(CommandView, "count_cap", 3)


def test_readings_count_stops_at_the_cap(client, login_as, operator, device, small_cap):
    factories.ReadingFactory.create_batch(5, device=device)
    login_as(operator)
    html = client.get("/admin/readings/").get_data(as_text=True)
    assert "List (3+)" in html  # an estimate that says so
    assert 'data-testid="count-capped"' in html and "More than 3 rows" in html


def test_below_the_cap_the_count_is_exact(client, login_as, operator, device, small_cap):
    factories.CommandFactory.create_batch(2, device=device)
    login_as(operator)
    html = client.get("/admin/commands/").get_data(as_text=True)
    assert "List (2)" in html and 'data-testid="count-capped"' not in html


def test_capped_count_respects_the_operators_scope(
    client, login_as, operator, device, other_device, small_cap
):
    factories.ReadingFactory.create_batch(5, device=other_device)
    factories.ReadingFactory.create_batch(1, device=device)
    login_as(operator)
    assert "List (1)" in client.get("/admin/readings/").get_data(as_text=True)


def test_the_audit_log_counts_up_to_the_cap_too(client, login_as, admin, monkeypatch):
    monkeypatch.setattr(AuditView, "count_cap", 3)
    factories.AuditEventFactory.create_batch(5)
    login_as(admin)
    html = client.get("/admin/audit/").get_data(as_text=True)
    assert "List (3+)" in html and "More than 3 rows" in html


def test_filter_by_device_name(client, login_as, admin, device, other_device):
    factories.ReadingFactory(device=device, metric="mine")
    factories.ReadingFactory(device=other_device, metric="theirs")
    login_as(admin)
    html = client.get(f"/admin/readings/?flt0_device_devices_name_equals={device.name}").get_data(
        as_text=True
    )
    assert "mine" in html and "theirs" not in html
