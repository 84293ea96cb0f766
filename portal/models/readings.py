"""Readings: numbers a device measured (the biggest table by far)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.models.base import Model
from portal.models.devices import Device
from portal.models.types import BigIntKey, UTCDateTime


class Reading(Model):
    __tablename__ = "readings"
    __table_args__ = (
        # Reading back one device (optionally one metric), newest first, by keyset.
        Index("ix_readings_device_metric_recorded", "device_id", "metric", "recorded_at", "id"),
        # ... and its chart: metric and value ride along, so a week of a busy device's
        # readings is read from this index alone instead of one table look-up per reading.
        Index("ix_readings_device_recorded", "device_id", "recorded_at", "id", "metric", "value"),
        Index("ix_readings_recorded", "recorded_at", "id"),
        # The admin's list filtered by device, newest first by id.
        Index("ix_readings_device_id", "device_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float]
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())

    device: Mapped[Device] = relationship()

    def __str__(self) -> str:
        return f"{self.metric}={self.value}"
