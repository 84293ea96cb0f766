"""factory_boy factories for every model: valid by default, unique names by sequence."""

from __future__ import annotations

import secrets
from datetime import timedelta

import factory
from factory.alchemy import SQLAlchemyModelFactory

from portal.extensions import db
from portal.models import (
    AuditEvent,
    ChannelKind,
    Command,
    CommandStatus,
    Device,
    NotificationAttempt,
    NotificationChannel,
    NotificationDelivery,
    PersonalToken,
    Reading,
    Role,
    Schedule,
    ScheduleKind,
    User,
    utcnow,
)
from portal.services import channels, secret_box
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


class NotificationChannelFactory(Base):
    """A webhook channel; ``secret`` (the clear signing secret) is set on the returned object."""

    class Meta:
        model = NotificationChannel

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"channel-{n}")
    kind = ChannelKind.webhook
    url = "http://127.0.0.1:9/hook"
    enabled = True

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        secret = None
        if str(kwargs.get("kind", ChannelKind.webhook)) == "webhook":
            secret = channels.SECRET_PREFIX + secrets.token_urlsafe(16)
            kwargs.setdefault("secret", secret_box.fernet(channels.SEAL).encrypt(secret.encode()))
            kwargs.setdefault("secret_prefix", secret[:10])
        else:
            kwargs.setdefault("url", None)
            kwargs.setdefault("address", "ops@example.org")
        obj = super()._create(model_class, *args, **kwargs)
        obj.clear_secret = secret
        return obj


class NotificationDeliveryFactory(Base):
    class Meta:
        model = NotificationDelivery

    channel = factory.SubFactory(NotificationChannelFactory)
    event = "alert.raised"
    body = factory.LazyFunction(lambda: {"id": "e1", "event": "alert.raised"})
    next_attempt_at = factory.LazyFunction(utcnow)


class NotificationAttemptFactory(Base):
    class Meta:
        model = NotificationAttempt

    delivery = factory.SubFactory(NotificationDeliveryFactory)
    attempted_at = factory.LazyFunction(utcnow)
    duration_ms = 12
    status_code = 500
    error = "HTTP 500"
