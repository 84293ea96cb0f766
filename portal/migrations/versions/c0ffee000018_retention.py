"""Retention: a per-device override of how long readings are kept; what a pass purged

Revision ID: c0ffee000018
Revises: c0ffee000017
Create Date: 2026-12-02 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c0ffee000018'
down_revision = 'c0ffee000017'
branch_labels = None
depends_on = None


def upgrade():
    # Null = the installation's PORTAL_READINGS_RETENTION_DAYS, 0 = keep forever, N = days.
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('readings_retention_days', sa.Integer(), nullable=True))

    # Rows the pass's retention purge removed (readings, commands, audit entries together).
    with op.batch_alter_table('scheduler_passes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('purged', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('scheduler_passes', schema=None) as batch_op:
        batch_op.drop_column('purged')

    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('readings_retention_days')
