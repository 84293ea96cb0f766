"""Roll-ups: each device's metrics summarised per UTC hour and per UTC day.

A row holds what a chart or a dashboard asks of a slice of time (count, sum, minimum, maximum,
and the last value with its time, so a late reading still resolves "last" by time) and is kept
longer than raw readings. ``services/rollups.py`` keeps the rows up to date as readings arrive.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.models.base import Model
from portal.models.types import UTCDateTime


class _Rollup:
    """The columns of both grains. The primary key leads with the device and the time, so a
    chart reads a range of its device's slices (every metric) as one index range; the summary
    API, which asks for one metric, filters that range."""

    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int]
    total: Mapped[float]
    minimum: Mapped[float]
    maximum: Mapped[float]
    last_value: Mapped[float]
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())

    @property
    def mean(self) -> float:
        return self.total / self.count


# Retention deletes by age, across every device: the ``starts_at`` indexes.


class HourlyRollup(_Rollup, Model):
    __tablename__ = "reading_rollups_hourly"
    __table_args__ = (Index("ix_reading_rollups_hourly_starts_at", "starts_at"),)


class DailyRollup(_Rollup, Model):
    __tablename__ = "reading_rollups_daily"
    __table_args__ = (Index("ix_reading_rollups_daily_starts_at", "starts_at"),)
