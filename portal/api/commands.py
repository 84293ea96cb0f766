"""Commands across devices for people and scripts: list, show, cancel."""

from __future__ import annotations

from portal.api.pagination import decode_id_cursor, page
from portal.api.routing import route
from portal.api.schemas import CommandOut, CommandPage, CommandsQuery
from portal.models import User
from portal.services import commands


@route(
    "/commands",
    summary="List commands, newest first",
    tag="commands",
    query=CommandsQuery,
    responses={200: CommandPage},
)
def list_commands(user: User, query: CommandsQuery):
    """Filter by ``status`` and ``device_id``; only devices the caller may see."""
    rows = commands.list_commands(
        user,
        status=query.status,
        device_id=query.device_id,
        limit=query.limit + 1,
        before_id=decode_id_cursor(query.cursor),
    )
    shown, cursor = page(rows, query.limit, lambda c: (c.id,))
    return CommandPage(items=[CommandOut.of(c) for c in shown], next_cursor=cursor)


@route(
    "/commands/{command_id}", summary="Show a command", tag="commands", responses={200: CommandOut}
)
def show_command(user: User, command_id: int):
    return CommandOut.of(commands.get_command_for(user, command_id))


@route(
    "/commands/{command_id}/cancel",
    "POST",
    summary="Cancel a command",
    tag="commands",
    responses={200: CommandOut},
    errors=(409,),
)
def cancel_command(user: User, command_id: int):
    """Only a ``queued`` or ``delivered`` command can be cancelled; otherwise 409."""
    command = commands.get_command_for(user, command_id)
    return CommandOut.of(commands.cancel_command(user, command))
