"""Readings partitioned by UTC day on PostgreSQL (SQLite: no change)

The readings move into a table partitioned by range of recorded_at, with a DEFAULT partition
and one partition per day that holds readings within the last 400 days or is up to 7 days
ahead; readings of other days (older, or a device clock far ahead) stay in the DEFAULT
partition, which retention deletes from row by row. Ids, and the
sequence that makes them, are kept. Everything happens in the migration's transaction: a
failure leaves the old table as it was.

Revision ID: c0ffee000020
Revises: c0ffee000019
Create Date: 2026-12-02 01:30:00.000000

"""
from datetime import UTC, datetime, timedelta

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c0ffee000020'
down_revision = 'c0ffee000019'
branch_labels = None
depends_on = None

INDEXES = {
    'ix_readings_device_metric_recorded': '(device_id, metric, recorded_at, id)',
    'ix_readings_device_recorded': '(device_id, recorded_at, id, metric, value)',
    'ix_readings_recorded': '(recorded_at, id)',
    'ix_readings_device_id': '(device_id, id)',
}
DAYS_KEPT_APART = 400
DAYS_AHEAD = 7


def _move(partitioned):
    """Rename the current table (and its indexes and constraints) out of the way, make the new
    one, copy the rows, give it the sequence and drop the old one."""
    bind = op.get_bind()
    op.execute('ALTER TABLE readings RENAME TO readings_before')
    op.execute('ALTER TABLE readings_before RENAME CONSTRAINT pk_readings TO pk_readings_before')
    op.execute('ALTER TABLE readings_before RENAME CONSTRAINT fk_readings_device_id_devices '
               'TO fk_readings_before_device_id_devices')
    for name in INDEXES:
        op.execute(f'ALTER INDEX {name} RENAME TO {name}_before')
    key = '(id, recorded_at)' if partitioned else '(id)'
    tail = ' PARTITION BY RANGE (recorded_at)' if partitioned else ''
    op.execute(
        'CREATE TABLE readings (LIKE readings_before INCLUDING DEFAULTS, '
        f'CONSTRAINT pk_readings PRIMARY KEY {key}, '
        'CONSTRAINT fk_readings_device_id_devices FOREIGN KEY (device_id) '
        f'REFERENCES devices (id) ON DELETE CASCADE){tail}'
    )
    if partitioned:
        op.execute('CREATE TABLE readings_default PARTITION OF readings DEFAULT')
        today = datetime.now(UTC).date()
        first = today - timedelta(days=DAYS_KEPT_APART)
        last = today + timedelta(days=DAYS_AHEAD + 1)
        days = set(bind.execute(sa.text(
            "SELECT DISTINCT (recorded_at AT TIME ZONE 'UTC')::date FROM readings_before "
            "WHERE recorded_at >= :first AND recorded_at < :last"
        ), {
            'first': datetime.combine(first, datetime.min.time(), tzinfo=UTC),
            'last': datetime.combine(last, datetime.min.time(), tzinfo=UTC),
        }).scalars())
        days |= {today + timedelta(days=n) for n in range(-1, DAYS_AHEAD + 1)}
        for day in sorted(days):
            start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
            end = start + timedelta(days=1)
            op.execute(
                f'CREATE TABLE readings_p{day:%Y%m%d} PARTITION OF readings '
                f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
            )
    op.execute('INSERT INTO readings SELECT * FROM readings_before')
    for name, columns in INDEXES.items():
        op.execute(f'CREATE INDEX {name} ON readings {columns}')
    op.execute('ALTER SEQUENCE readings_id_seq OWNED BY readings.id')
    op.execute('DROP TABLE readings_before')
    op.execute('ANALYZE readings')


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        _move(partitioned=True)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        _move(partitioned=False)
