"""Notification channels for people and scripts: CRUD, a new signing secret, a test."""

from __future__ import annotations

from sqlalchemy.orm import joinedload

from portal.api.deleting import deleted
from portal.api.pagination import decode_id_cursor, page
from portal.api.routing import patch_fields, route
from portal.api.schemas import (
    ChannelIn,
    ChannelOut,
    ChannelPage,
    ChannelPatch,
    ChannelWithSecretOut,
    DeletionOut,
    DeliveryOut,
    ListQuery,
)
from portal.extensions import db
from portal.models import NotificationChannel, User
from portal.services import channels, deletes, notifications

NOT_NULL = ("name", "enabled")


@route(
    "/channels",
    summary="List notification channels",
    tag="channels",
    query=ListQuery,
    responses={200: ChannelPage},
)
def list_channels(user: User, query: ListQuery):
    """Operators see their own channels; viewers and admins see all. Ordered by id."""
    after = decode_id_cursor(query.cursor)
    statement = (
        channels.channel_query_for(user)
        .options(joinedload(NotificationChannel.owner))
        .order_by(NotificationChannel.id)
    )
    if after is not None:
        statement = statement.where(NotificationChannel.id > after)
    rows = db.session.execute(statement.limit(query.limit + 1)).scalars().all()
    shown, cursor = page(rows, query.limit, lambda c: (c.id,))
    return ChannelPage(items=[ChannelOut.of(c) for c in shown], next_cursor=cursor)


@route(
    "/channels",
    "POST",
    summary="Make a notification channel",
    tag="channels",
    body=ChannelIn,
    responses={201: ChannelWithSecretOut},
    errors=(409,),
)
def create_channel(user: User, body: ChannelIn):
    """A webhook channel is answered with its signing ``secret``, shown this once."""
    channel, secret = channels.create_channel(user, **body.model_dump())
    return ChannelWithSecretOut.with_secret(channel, secret), 201


@route(
    "/channels/{channel_id}",
    summary="Show a notification channel",
    tag="channels",
    responses={200: ChannelOut},
)
def show_channel(user: User, channel_id: int):
    return ChannelOut.of(channels.get_channel_for(user, channel_id))


@route(
    "/channels/{channel_id}",
    "PATCH",
    summary="Change a notification channel",
    tag="channels",
    body=ChannelPatch,
    responses={200: ChannelOut},
    errors=(409,),
)
def change_channel(user: User, channel_id: int, body: ChannelPatch):
    """Only the fields sent change; the kind cannot; ``owner`` (a user name) is for admins."""
    channel = channels.get_channel_for(user, channel_id, for_change=True)
    fields = patch_fields(body, NOT_NULL, ("owner", "kind"))
    return ChannelOut.of(channels.update_channel(user, channel, **fields))


@route(
    "/channels/{channel_id}",
    "DELETE",
    summary="Delete a notification channel",
    tag="channels",
    responses={204: None, 200: DeletionOut},
)
def delete_channel(user: User, channel_id: int):
    """Its deliveries, sent or not, go with it, in the audit log. Answers 204; with `Prefer:
    return=representation`, 200 and what was deleted."""
    channel = channels.get_channel_for(user, channel_id, for_change=True)
    return deleted(channels.delete_channel(user, channel))


@route(
    "/channels/{channel_id}/delete-preview",
    summary="What deleting a notification channel would remove",
    tag="channels",
    responses={200: DeletionOut},
    errors=(403,),
)
def preview_channel_delete(user: User, channel_id: int):
    """Nothing is deleted. Counts stop at 10,000 (`more`: there are more); 403 for a role
    that may not delete it."""
    channel = channels.get_channel_for(user, channel_id, for_change=True)
    return DeletionOut.of(deletes.preview(user, channel))


@route(
    "/channels/{channel_id}/secret",
    "POST",
    summary="Renew a webhook channel's signing secret",
    tag="channels",
    responses={200: ChannelWithSecretOut},
    errors=(409,),
)
def rotate_secret(user: User, channel_id: int):
    """The new secret is shown this once and signs every delivery from now on (retries too);
    409 for an email channel."""
    channel = channels.get_channel_for(user, channel_id, for_change=True)
    secret = channels.rotate_channel_secret(user, channel)
    return ChannelWithSecretOut.with_secret(channel, secret)


@route(
    "/channels/{channel_id}/test",
    "POST",
    summary="Send a test notification",
    tag="channels",
    responses={201: DeliveryOut},
    errors=(409,),
)
def test_channel(user: User, channel_id: int):
    """Queues a ``notification.test`` event; the next scheduler pass sends it. 409 when the
    channel is disabled."""
    channel = channels.get_channel_for(user, channel_id, for_change=True)
    return DeliveryOut.of(notifications.send_test(user, channel)), 201
