"""Readings: numbers a device measured (the biggest table by far)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DDL, ForeignKey, Index, String, event
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.schema import CreateTable

from portal.models.base import Model
from portal.models.devices import Device
from portal.models.types import BigIntKey, UTCDateTime

# On PostgreSQL the table is partitioned by UTC week of ``recorded_at``
# (``portal/services/partitions.py`` makes each week's partition ahead of time and retention
# drops whole weeks); a reading at any other time lands in the DEFAULT partition. Its primary
# key is (id, recorded_at) there, as PostgreSQL requires of a partitioned table; ids still
# come from one sequence. SQLite keeps one table.
PARTITIONED_PRIMARY_KEY = "PRIMARY KEY (id, recorded_at)"


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
        {"postgresql_partition_by": "RANGE (recorded_at)"},
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float]
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())

    device: Mapped[Device] = relationship()

    def __str__(self) -> str:
        return f"{self.metric}={self.value}"


class MetricUnit(Model):
    """The unit a device last sent with a metric's readings ("°C", "kPa"), for its chart:
    one row per device and metric, written only when a new unit arrives."""

    __tablename__ = "metric_units"

    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    unit: Mapped[str] = mapped_column(String(16))


@compiles(CreateTable, "postgresql")
def _create_table(element: CreateTable, compiler: Any, **kw: Any) -> str:
    sql = str(compiler.visit_create_table(element, **kw))
    if element.element is Reading.__table__:
        sql = sql.replace("PRIMARY KEY (id)", PARTITIONED_PRIMARY_KEY, 1)
    return sql


event.listen(
    Reading.__table__,
    "after_create",
    DDL("CREATE TABLE readings_default PARTITION OF readings DEFAULT").execute_if(  # type: ignore[no-untyped-call]
        dialect="postgresql"
    ),
)
