"""Tables and their constraints, on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from portal.models import Command, CommandSource, Device, Reading, Schedule, User
from tests import factories


def test_instants_come_back_aware_in_utc(db, device):
    at = datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    factories.ReadingFactory(device=device, recorded_at=at)
    db.session.expire_all()
    stored = db.session.execute(select(Reading.recorded_at)).scalar_one()
    assert stored == at and stored.tzinfo is not None and stored.utcoffset() == timedelta(0)


def test_device_names_are_unique(db, operator):
    factories.DeviceFactory(owner=operator, name="twin")
    with pytest.raises(IntegrityError):
        factories.DeviceFactory(owner=operator, name="twin")


def test_usernames_are_unique(db):
    factories.UserFactory(username="sam")
    with pytest.raises(IntegrityError):
        factories.UserFactory(username="sam")


def test_a_schedule_due_time_makes_at_most_one_command(db, device):
    schedule = factories.ScheduleFactory(device=device)
    due = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)
    factories.CommandFactory(
        device=device, schedule=schedule, due_at=due, source=CommandSource.schedule
    )
    with pytest.raises(IntegrityError):
        factories.CommandFactory(
            device=device, schedule=schedule, due_at=due, source=CommandSource.schedule
        )


def test_deleting_a_device_removes_what_hangs_off_it(db, device):
    factories.ReadingFactory(device=device)
    factories.CommandFactory(device=device)
    factories.ScheduleFactory(device=device)
    db.session.delete(device)
    db.session.commit()
    for model in (Reading, Command, Schedule, Device):
        assert db.session.scalar(select(model).limit(1)) is None


def test_a_user_who_owns_devices_cannot_be_deleted_underneath_them(db, device):
    with pytest.raises(IntegrityError):
        db.session.execute(text("DELETE FROM users WHERE id = :id"), {"id": device.owner_id})
        db.session.commit()
    db.session.rollback()
    assert db.session.get(User, device.owner_id) is not None


def test_sqlite_runs_in_wal_mode_with_foreign_keys(db):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas only")
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000
        assert conn.execute(text("PRAGMA mmap_size")).scalar() == 256 * 1024 * 1024


def test_secrets_are_stored_only_as_hashes(db, device):
    row = db.session.execute(
        text("SELECT token_hash FROM devices WHERE id = :id"), {"id": device.id}
    ).scalar_one()
    assert device.token not in row and len(row) == 64
