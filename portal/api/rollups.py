"""A device's readings summarised per hour or day, from the roll-ups (scripts, Grafana)."""

from __future__ import annotations

from portal.api.pagination import decode_instant_cursor, page
from portal.api.routing import route
from portal.api.schemas import SummaryBucket, SummaryOut, SummaryQuery
from portal.models import User, utcnow
from portal.services import rollups
from portal.services.access import get_device_for


@route(
    "/devices/{device_id}/readings/summary",
    summary="A device's readings per hour or day",
    tag="devices",
    query=SummaryQuery,
    responses={200: SummaryOut},
)
def readings_summary(user: User, device_id: int, query: SummaryQuery):
    """Count, minimum, maximum, mean, sum and last value of one ``metric`` per UTC hour or day
    (``step``), for buckets that start in [``since``, ``until``), oldest first. Hours and days
    without readings are left out. Summaries are kept longer than raw readings
    (`PORTAL_ROLLUP_RETENTION_DAYS`, default two years)."""
    device = get_device_for(user, device_id)
    since, until = rollups.summary_window(query.step, query.since, query.until, utcnow())
    rows = rollups.summarize(
        device.id,
        query.metric,
        query.step,
        since,
        until,
        limit=query.limit + 1,
        after=decode_instant_cursor(query.cursor),
    )
    shown, cursor = page(rows, query.limit, lambda b: (b.starts_at,))
    return SummaryOut(
        device_id=device.id,
        metric=query.metric,
        step=query.step,
        since=since,
        until=until,
        buckets=[
            SummaryBucket(
                start=b.starts_at,
                count=b.count,
                min=b.minimum,
                max=b.maximum,
                mean=b.mean,
                sum=b.total,
                last=b.last_value,
                last_at=b.last_at,
            )
            for b in shown
        ],
        next_cursor=cursor,
    )
