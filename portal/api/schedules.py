"""Schedules for people and scripts: CRUD and the next fire times."""

from __future__ import annotations

from sqlalchemy import select

from portal.api.deleting import deleted
from portal.api.pagination import decode_id_cursor, page
from portal.api.routing import patch_fields, route
from portal.api.schemas import (
    DeletionOut,
    NextOut,
    NextQuery,
    ScheduleIn,
    ScheduleOut,
    SchedulePage,
    SchedulePatch,
    SchedulesQuery,
)
from portal.extensions import db
from portal.models import Schedule, User
from portal.scheduling import timing
from portal.services import deletes, schedules
from portal.services.access import scope

NOT_NULL = ("enabled",)
DEFAULTS = {"timezone": "UTC", "misfire_grace_seconds": 300, "command_ttl_seconds": 3600}
# Answer fields that are no column: the words, and the sun settings gathered from theirs.
COMPUTED = ("description", "sun")


def _out(schedule: Schedule) -> ScheduleOut:
    values = {
        name: getattr(schedule, name) for name in ScheduleOut.model_fields if name not in COMPUTED
    }
    sun = schedules.sun_of(schedule)
    return ScheduleOut.model_validate(
        {
            **values,
            "sun": None if sun is None else sun.as_dict(),
            "description": schedules.describe(schedule),
        }
    )


@route(
    "/schedules",
    summary="List schedules",
    tag="schedules",
    query=SchedulesQuery,
    responses={200: SchedulePage},
)
def list_schedules(user: User, query: SchedulesQuery):
    """Schedules of the devices the caller may see, by id; filter by ``device_id``."""
    statement = scope(select(Schedule), user, Schedule.device_id).order_by(Schedule.id)
    after = decode_id_cursor(query.cursor)
    if after is not None:
        statement = statement.where(Schedule.id > after)
    if query.device_id is not None:
        statement = statement.where(Schedule.device_id == query.device_id)
    rows = db.session.execute(statement.limit(query.limit + 1)).scalars().all()
    shown, cursor = page(rows, query.limit, lambda s: (s.id,))
    return SchedulePage(items=[_out(s) for s in shown], next_cursor=cursor)


@route(
    "/schedules",
    "POST",
    summary="Create a schedule",
    tag="schedules",
    body=ScheduleIn,
    responses={201: ScheduleOut},
)
def create_schedule(user: User, body: ScheduleIn):
    """Exactly one of ``cron``, ``interval_seconds``, ``run_at``, ``sun``; ``timezone`` is IANA
    (for ``sun``, the zone whose local days count: one fire a day)."""
    fields = body.model_dump(exclude={"device_id"})
    for name, default in DEFAULTS.items():
        if fields[name] is None:
            fields[name] = default
    schedule = schedules.create_schedule(user, device=body.device_id, **fields)
    return _out(schedule), 201


@route(
    "/schedules/{schedule_id}",
    summary="Show a schedule",
    tag="schedules",
    responses={200: ScheduleOut},
)
def show_schedule(user: User, schedule_id: int):
    return _out(schedules.get_schedule_for(user, schedule_id))


@route(
    "/schedules/{schedule_id}",
    "PATCH",
    summary="Change a schedule",
    tag="schedules",
    body=SchedulePatch,
    responses={200: ScheduleOut},
)
def change_schedule(user: User, schedule_id: int, body: SchedulePatch):
    """Only the fields sent change; sending one of cron/interval_seconds/run_at/sun switches
    the kind (the parts of ``sun`` sent to a sun schedule change only those parts)."""
    schedule = schedules.get_schedule_for(user, schedule_id, for_change=True)
    fields = patch_fields(body, NOT_NULL)
    return _out(schedules.update_schedule(user, schedule, **fields))


@route(
    "/schedules/{schedule_id}",
    "DELETE",
    summary="Delete a schedule",
    tag="schedules",
    responses={204: None, 200: DeletionOut},
)
def delete_schedule(user: User, schedule_id: int):
    """Commands it already sent stay, no longer tied to it. Answers 204; with `Prefer:
    return=representation`, 200 and what was deleted."""
    schedule = schedules.get_schedule_for(user, schedule_id, for_change=True)
    return deleted(schedules.delete_schedule(user, schedule))


@route(
    "/schedules/{schedule_id}/delete-preview",
    summary="What deleting a schedule would remove",
    tag="schedules",
    responses={200: DeletionOut},
    errors=(403,),
)
def preview_schedule_delete(user: User, schedule_id: int):
    """Nothing is deleted; 403 for a role that may not delete it."""
    schedule = schedules.get_schedule_for(user, schedule_id, for_change=True)
    return DeletionOut.of(deletes.preview(user, schedule))


@route(
    "/schedules/{schedule_id}/next",
    summary="The next fire times",
    tag="schedules",
    query=NextQuery,
    responses={200: NextOut},
)
def next_fire_times(user: User, schedule_id: int, query: NextQuery):
    """In UTC and in the schedule's time zone; none for a disabled or finished schedule."""
    schedule = schedules.get_schedule_for(user, schedule_id)
    zone = timing.zone(schedule.timezone)
    times = schedules.next_fire_times(schedule, query.count)
    return {"items": [{"utc": t, "local": t.astimezone(zone).isoformat()} for t in times]}
