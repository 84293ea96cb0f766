"""Roll-ups of readings per device, metric and UTC hour or day, filled from the readings kept

Revision ID: c0ffee000019
Revises: c0ffee000018
Create Date: 2026-12-02 09:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c0ffee000019'
down_revision = 'c0ffee000018'
branch_labels = None
depends_on = None

TABLES = {'hour': 'reading_rollups_hourly', 'day': 'reading_rollups_daily'}
COLUMNS = 'device_id, starts_at, metric, count, total, minimum, maximum, last_value, last_at'


def upgrade():
    for table in TABLES.values():
        op.create_table(table,
        sa.Column('device_id', sa.Integer(), nullable=False),
        sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('metric', sa.String(length=64), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('total', sa.Double(), nullable=False),
        sa.Column('minimum', sa.Double(), nullable=False),
        sa.Column('maximum', sa.Double(), nullable=False),
        sa.Column('last_value', sa.Double(), nullable=False),
        sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f(f'fk_{table}_device_id_devices'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('device_id', 'starts_at', 'metric', name=op.f(f'pk_{table}'))
        )
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(f'ix_{table}_starts_at', ['starts_at'], unique=False)

    # An installation that upgrades keeps its history summarised: hours from the readings
    # (the last value is the one with the latest time, then the larger value), days from the
    # hours (a day's last is its latest hour's). The same statements as
    # portal/services/rollups.py's rebuild_rollups, copied so this file never changes.
    dialect = op.get_bind().dialect.name
    hour = _start('recorded_at', 'hour', dialect)
    op.execute(
        f"INSERT INTO {TABLES['hour']} ({COLUMNS}) "
        "SELECT device_id, slot, metric, count(*), sum(value), min(value), max(value), "
        "max(last), max(recorded_at) FROM (SELECT device_id, metric, value, recorded_at, "
        f"{hour} AS slot, first_value(value) OVER (PARTITION BY device_id, metric, "
        f"{hour} ORDER BY recorded_at DESC, value DESC) AS last FROM readings) AS r "
        "GROUP BY device_id, slot, metric"
    )
    day = _start('starts_at', 'day', dialect)
    op.execute(
        f"INSERT INTO {TABLES['day']} ({COLUMNS}) "
        "SELECT device_id, slot, metric, sum(count), sum(total), min(minimum), max(maximum), "
        "max(last), max(last_at) FROM (SELECT device_id, metric, count, total, minimum, "
        f"maximum, last_at, {day} AS slot, first_value(last_value) OVER (PARTITION BY "
        f"device_id, metric, {day} ORDER BY starts_at DESC) AS last "
        f"FROM {TABLES['hour']}) AS r GROUP BY device_id, slot, metric"
    )


def _start(column, step, dialect):
    if dialect == 'postgresql':
        return f"date_bin('1 {step}', {column}, timestamptz '1970-01-01 00:00:00+00')"
    # SQLite keeps UTC as 'YYYY-MM-DD HH:MM:SS.ffffff' text: cut it to the hour or the day.
    if step == 'hour':
        return f"substr({column}, 1, 13) || ':00:00.000000'"
    return f"substr({column}, 1, 10) || ' 00:00:00.000000'"


def downgrade():
    for table in reversed(TABLES.values()):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_starts_at')
        op.drop_table(table)
