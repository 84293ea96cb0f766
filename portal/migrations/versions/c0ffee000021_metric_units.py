"""The unit a device sends with a metric's readings, kept per device and metric for its chart

Revision ID: c0ffee000021
Revises: c0ffee000020
Create Date: 2026-12-02 02:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c0ffee000021'
down_revision = 'c0ffee000020'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('metric_units',
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('metric', sa.String(length=64), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_metric_units_device_id_devices'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('device_id', 'metric', name=op.f('pk_metric_units'))
    )


def downgrade():
    op.drop_table('metric_units')
