"""factory_boy factories for every model: valid by default, unique names by sequence."""

from __future__ import annotations

from datetime import timedelta

import factory
from factory.alchemy import SQLAlchemyModelFactory

from portal.extensions import db
from portal.models import (
    AuditEvent,
    Command,
    CommandStatus,
    Device,
    PersonalToken,
    Reading,
    Role,
    Schedule,
    ScheduleKind,
    User,
    utcnow,
)
from portal.services.tokens import DEVICE_PREFIX, PERSONAL_PREFIX, new_token
from portal.services.users import hash_password

PASSWORD = "correct horse battery"


class Base(SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = lambda: db.session  # noqa: E731
        sqlalchemy_session_persistence = "commit"


class UserFactory(Base):
    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"user{n}")
    password_hash = factory.LazyFunction(lambda: hash_password(PASSWORD))
    role = Role.operator
    active = True


class PersonalTokenFactory(Base):
    """``token`` (the clear text) is set on the returned object for tests to use."""

    class Meta:
        model = PersonalToken

    user = factory.SubFactory(UserFactory)
    label = "test"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        token, digest, prefix = new_token(PERSONAL_PREFIX)
        kwargs.setdefault("token_hash", digest)
        kwargs.setdefault("token_prefix", prefix)
        obj = super()._create(model_class, *args, **kwargs)
        obj.token = token
        return obj


class DeviceFactory(Base):
    """``token`` (the clear text) is set on the returned object for tests to use."""

    class Meta:
        model = Device

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"device-{n}")
    kind = "esp32"
    location = "Shed"
    enabled = True

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        token, digest, prefix = new_token(DEVICE_PREFIX)
        kwargs.setdefault("token_hash", digest)
        kwargs.setdefault("token_prefix", prefix)
        obj = super()._create(model_class, *args, **kwargs)
        obj.token = token
        return obj


class ScheduleFactory(Base):
    class Meta:
        model = Schedule

    name = factory.Sequence(lambda n: f"schedule-{n}")
    device = factory.SubFactory(DeviceFactory)
    action = "relay.on"
    payload = factory.LazyFunction(dict)
    kind = ScheduleKind.interval
    interval_seconds = 300
    timezone = "UTC"
    enabled = True
    next_fire_at = factory.LazyFunction(lambda: utcnow() + timedelta(minutes=5))


class CommandFactory(Base):
    class Meta:
        model = Command

    device = factory.SubFactory(DeviceFactory)
    action = "relay.on"
    payload = factory.LazyFunction(dict)
    status = CommandStatus.queued
    expires_at = factory.LazyFunction(lambda: utcnow() + timedelta(hours=1))


class ReadingFactory(Base):
    class Meta:
        model = Reading

    device = factory.SubFactory(DeviceFactory)
    metric = "temperature"
    value = 21.5
    recorded_at = factory.LazyFunction(utcnow)


class AuditEventFactory(Base):
    class Meta:
        model = AuditEvent

    action = "update"
    object_type = "device"
    object_id = "1"
