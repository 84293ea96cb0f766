"""``flask data purge [--dry-run]`` and ``flask data size``."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from portal.models import AuditEvent, CommandStatus, Reading, utcnow
from tests import factories

DAY = timedelta(days=1)


def readings(db) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(Reading))


def expired_data(device):
    now = utcnow()
    factories.ReadingFactory(device=device, recorded_at=now - 91 * DAY)
    factories.ReadingFactory(device=device, recorded_at=now - 89 * DAY)
    created = now - 200 * DAY
    factories.CommandFactory(
        device=device,
        status=CommandStatus.succeeded,
        created_at=created,
        expires_at=created + DAY,
        finished_at=created,
    )
    factories.CommandFactory(device=device, status=CommandStatus.queued, created_at=created)
    factories.AuditEventFactory(created_at=now - 800 * DAY)


def test_dry_run_says_what_would_go_and_deletes_nothing(runner, db, device):
    expired_data(device)
    result = runner.invoke(args=["data", "purge", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(
        "Would delete 1 reading(s), 1 ended command(s), 1 audit entries and 0 roll-up(s)"
    )
    assert readings(db) == 2


def test_purge_deletes_what_is_past_its_retention(runner, db, device):
    expired_data(device)
    result = runner.invoke(args=["data", "purge"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(
        "Deleted 1 reading(s), 1 ended command(s), 1 audit entries and 0 roll-up(s)"
    )
    assert readings(db) == 1
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 0
    again = runner.invoke(args=["data", "purge"])
    assert again.output.startswith("Deleted 0 reading(s), 0 ended command(s), 0 audit")


def test_purge_follows_the_settings(app, runner, db, device):
    expired_data(device)
    app.config.update(READINGS_RETENTION_DAYS=0, COMMANDS_RETENTION_DAYS=0)
    result = runner.invoke(args=["data", "purge"])
    assert result.output.startswith("Deleted 0 reading(s), 0 ended command(s), 1 audit")
    assert readings(db) == 2


def test_size_prints_rows_oldest_day_and_retention_per_table(runner, db, operator, device):
    expired_data(device)
    factories.DeviceFactory(owner=operator, readings_retention_days=0)
    oldest = (utcnow() - 91 * DAY).date().isoformat()
    result = runner.invoke(args=["data", "size"])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()]
    assert lines[0] == ["table", "rows", "oldest", "day", "kept"]
    assert lines[1][:5] == ["readings", "2", oldest, "90", "days"]
    assert "(1 device(s) have their own)" in result.output
    assert lines[2][:2] == ["commands", "2"] and lines[2][-2:] == ["once", "ended"]
    assert lines[3][:2] == ["audit_events", "1"] and lines[3][-2:] == ["730", "days"]


def test_size_of_an_empty_database(runner, db):
    result = runner.invoke(args=["data", "size"])
    assert result.exit_code == 0
    assert result.output.splitlines()[1].split() == ["readings", "0", "-", "90", "days"]
