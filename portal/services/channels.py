"""Notification channels: creating, changing, deleting, webhook secrets, and who reaches which.

Channels are owned like devices: an operator makes and uses their own, an admin all of them,
a viewer reads them all and changes none. A channel out of reach is "not found". A webhook
channel signs each delivery with its secret: shown once when made (or renewed), kept encrypted
(``secret_box``) because the portal must sign with it, unlike tokens, which it only checks.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import InvalidToken
from sqlalchemy import Select, false, select

from portal.extensions import db
from portal.models import ChannelKind, NotificationChannel, Role, User
from portal.services import audit, deletes, secret_box
from portal.services.access import (
    check_owned_change,
    may_change_owned,
    may_see_owned,
    require_writer,
    sees_all,
)
from portal.services.errors import Conflict, InvalidInput, NotFound
from portal.services.users import resolve_owner

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# What secret_box derives the key of the webhook secrets from.
SEAL = "portal webhook secrets"
CHANNEL_FIELDS = ("name", "kind", "url", "address", "enabled", "owner_id")
EDITABLE = ("name", "kind", "url", "address", "enabled", "owner")
MAX_NAME = 100
MAX_URL = 2000
MAX_ADDRESS = 254
# One plain address: no display name, no list, no spaces (it goes into an SMTP envelope as is).
ADDRESS_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]*)$")


class SecretUnreadable(Exception):
    """The stored secret cannot be decrypted: the portal's secret key changed since."""


# ---- reach ----------------------------------------------------------------------------------


def channel_query_for(user: User, *, for_change: bool = False) -> Select[NotificationChannel]:
    """Channels the user may see (or, with ``for_change``, change and use)."""
    query = select(NotificationChannel)
    if for_change and user.role is Role.viewer:
        return query.where(false())
    if user.role is Role.operator:
        query = query.where(NotificationChannel.owner_id == user.id)
    return query


def visible_channel_ids(user: User) -> Select[int] | None:
    """A subquery of the channel ids the user may see, or None when they see every channel."""
    if sees_all(user):
        return None
    return select(NotificationChannel.id).where(NotificationChannel.owner_id == user.id)


def may_change_channel(user: User, channel: NotificationChannel) -> bool:
    return may_change_owned(user, channel.owner_id)


def may_see_channel(user: User, channel: NotificationChannel) -> bool:
    return may_see_owned(user, channel.owner_id)


def check_channel_change(user: User, channel: NotificationChannel) -> None:
    """Raise if ``user`` may not change ``channel``: 404 out of reach, 403 read-only."""
    check_owned_change(user, channel.owner_id, "channel")


def get_channel_for(
    user: User, channel_id: int, *, for_change: bool = False
) -> NotificationChannel:
    """The channel if the user may see it (and change it, with ``for_change``).

    Raises NotFound when absent or out of reach, Forbidden when visible but read-only.
    """
    channel = None
    if isinstance(channel_id, int) and not isinstance(channel_id, bool):
        channel = db.session.get(NotificationChannel, channel_id)
    if channel is None or not may_see_channel(user, channel):
        raise NotFound("No such channel.")
    if for_change:
        check_channel_change(user, channel)
    return channel


def usable_channel_ids(user: User, channel_ids: Iterable[Any], field: str = "notify") -> list[int]:
    """The ids, checked: each names a channel ``user`` may use (an operator their own, an admin
    any). For the rules that notify: raises InvalidInput naming ``field`` otherwise, and a
    channel out of reach reads as one that does not exist."""
    values = list(channel_ids)
    if any(isinstance(value, bool) or not isinstance(value, int) for value in values):
        raise InvalidInput(fields={field: "A list of channel ids (whole numbers)."})
    ids: list[int] = list(dict.fromkeys(values))
    if not ids:
        return ids
    found = set(
        db.session.execute(
            channel_query_for(user, for_change=True)
            .where(NotificationChannel.id.in_(ids))
            .with_only_columns(NotificationChannel.id)
        ).scalars()
    )
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise InvalidInput(fields={field: f"No such channel: {', '.join(missing)}."})
    return ids


# ---- validation -----------------------------------------------------------------------------


def validate_url(value: Any) -> str:
    """A webhook URL: http or https, a host, ASCII only; ValueError says what is wrong."""
    url = "" if value is None else str(value).strip()
    if not url:
        raise ValueError("A URL is required for a webhook.")
    if len(url) > MAX_URL:
        raise ValueError(f"At most {MAX_URL} characters.")
    if not url.isascii() or any(not ch.isprintable() or ch.isspace() for ch in url):
        raise ValueError("ASCII without spaces or control characters (percent-encode others).")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (a port that is not a number from 0 to 65535 raises here)
    except ValueError:
        raise ValueError("The port must be a number from 1 to 65535.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.port == 0:
        raise ValueError("An http:// or https:// URL with a host, e.g. https://example.org/hook")
    return url


def validate_address(value: Any) -> str:
    """An email address (one, plain); ValueError says what is wrong."""
    address = "" if value is None else str(value).strip()
    if not address:
        raise ValueError("An address is required for an email channel.")
    if len(address) > MAX_ADDRESS or not ADDRESS_RE.match(address):
        raise ValueError("One plain email address, e.g. ops@example.org")
    return address


def _clean(fields: dict[str, Any], kind: ChannelKind) -> dict[str, Any]:
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    if "name" in fields:
        name = "" if fields["name"] is None else str(fields["name"]).strip()
        if not name:
            errors["name"] = "A name is required."
        elif len(name) > MAX_NAME:
            errors["name"] = f"At most {MAX_NAME} characters."
        clean["name"] = name
    checks = (
        ("url", ChannelKind.webhook, validate_url),
        ("address", ChannelKind.email, validate_address),
    )
    for field, wanted, check in checks:
        if field not in fields:
            continue
        if kind is not wanted:
            if fields[field] not in (None, ""):
                errors[field] = f"Only {wanted.value} channels have one."
            continue
        try:
            clean[field] = check(fields[field])
        except ValueError as exc:
            errors[field] = str(exc)
    if "enabled" in fields:
        clean["enabled"] = bool(fields["enabled"])
    if errors:
        raise InvalidInput(fields=errors)
    return clean


def _kind(value: Any) -> ChannelKind:
    try:
        return ChannelKind(value)
    except ValueError:
        raise InvalidInput(fields={"kind": "One of webhook, email."}) from None


def _check_name_free(owner_id: int, name: str, channel_id: int | None = None) -> None:
    taken = db.session.execute(
        select(NotificationChannel.id).where(
            NotificationChannel.owner_id == owner_id, NotificationChannel.name == name
        )
    ).scalar()
    if taken is not None and taken != channel_id:
        raise Conflict(
            f"The owner already has a channel named {name!r}.",
            code="name_taken",
            fields={"name": "This name is taken."},
        )


# ---- changes --------------------------------------------------------------------------------


def _new_secret(channel: NotificationChannel) -> str:
    secret = SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    channel.secret = secret_box.fernet(SEAL).encrypt(secret.encode())
    channel.secret_prefix = secret[: len(SECRET_PREFIX) + 4]
    return secret


def create_channel(
    actor: User | None,
    *,
    name: str,
    kind: ChannelKind | str,
    url: str | None = None,
    address: str | None = None,
    enabled: bool = True,
    owner: User | str | None = None,
) -> tuple[NotificationChannel, str | None]:
    """Make a channel; return it with a webhook's signing secret (shown once; None for email).

    ``actor`` None is the shell. Raises Forbidden for viewers, InvalidInput naming each bad
    field, Conflict when the owner has a channel of that name.
    """
    if actor is not None:
        require_writer(actor)
    channel_kind = _kind(kind)
    target = "url" if channel_kind is ChannelKind.webhook else "address"
    fields = {"name": name, "url": url, "address": address, "enabled": enabled}
    fields[target] = fields[target] or ""  # the one the kind needs is required
    clean = _clean(fields, channel_kind)
    owner_user = resolve_owner(actor, owner, "channels")
    _check_name_free(owner_user.id, clean["name"])
    channel = NotificationChannel(owner=owner_user, kind=channel_kind, **clean)
    secret = _new_secret(channel) if channel_kind is ChannelKind.webhook else None
    db.session.add(channel)
    db.session.flush()
    audit.record(actor, "create", channel, audit.diff({}, audit.snapshot(channel, CHANNEL_FIELDS)))
    return channel, secret


def update_channel(
    actor: User | None, channel: NotificationChannel, **fields: Any
) -> NotificationChannel:
    """Change a channel's name, URL or address (as its kind has), enabled flag or (admin) owner.

    The kind cannot change: make a new channel instead.
    """
    if actor is not None:
        check_channel_change(actor, channel)
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise InvalidInput(fields=dict.fromkeys(sorted(unknown), "Unknown field."))
    kind = fields.pop("kind", None)
    if kind is not None and _kind(kind) is not channel.kind:
        raise InvalidInput(fields={"kind": "A channel's kind cannot change; make a new one."})
    before = audit.snapshot(channel, CHANNEL_FIELDS)
    owner = fields.pop("owner", None)
    clean = _clean(fields, channel.kind)
    if owner is not None:
        if actor is not None and actor.role is not Role.admin:
            raise InvalidInput(fields={"owner": "Only an admin may give a channel away."})
        channel.owner = resolve_owner(actor, owner, "channels")
    _check_name_free(channel.owner.id, clean.get("name", channel.name), channel.id)
    for name, value in clean.items():
        setattr(channel, name, value)
    db.session.flush()
    changes = audit.diff(before, audit.snapshot(channel, CHANNEL_FIELDS))
    if changes:
        audit.record(actor, "update", channel, changes)
    return channel


def delete_channel(actor: User | None, channel: NotificationChannel) -> deletes.Deletion:
    """Delete a channel with its deliveries (and their attempts), audited
    (``services.deletes``); return what went."""
    deletes.check_delete(actor, channel)
    return deletes.remove(actor, channel, audit.diff(audit.snapshot(channel, CHANNEL_FIELDS), {}))


def rotate_channel_secret(actor: User | None, channel: NotificationChannel) -> str:
    """Give a webhook channel a new signing secret and return it (shown once).

    Deliveries sent from now on, retries included, are signed with it. Raises Conflict for an
    email channel (it has no secret).
    """
    if actor is not None:
        check_channel_change(actor, channel)
    if channel.kind is not ChannelKind.webhook:
        raise Conflict("Only webhook channels have a signing secret.", code="no_secret")
    secret = _new_secret(channel)
    db.session.flush()
    audit.record(actor, "rotate_secret", channel, {"secret": ["***", "***"]})
    return secret


def channel_secret(sealed: bytes | None) -> str:
    """The clear signing secret of a stored (encrypted) one; raises SecretUnreadable."""
    if not sealed:
        raise SecretUnreadable("The channel has no signing secret.")
    try:
        return secret_box.fernet(SEAL).decrypt(sealed).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "The signing secret cannot be decrypted (the secret key changed?); renew it."
        ) from None
