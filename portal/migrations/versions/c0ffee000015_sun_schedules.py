"""Sun schedules: the event, its offset and the place of a schedule of the sun kind

Revision ID: c0ffee000015
Revises: 93172e1d707e
Create Date: 2026-12-01 18:55:03.821554

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c0ffee000015'
down_revision = '93172e1d707e'
branch_labels = None
depends_on = None


def upgrade():
    # The kind column is a plain string (no native enum, no CHECK): "sun" needs no change there.
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sun_event', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('sun_offset_minutes', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('sun_latitude', sa.Double(), nullable=True))
        batch_op.add_column(sa.Column('sun_longitude', sa.Double(), nullable=True))


def downgrade():
    # Sun schedules cannot be kept without their settings.
    op.execute("DELETE FROM schedules WHERE kind = 'sun'")
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.drop_column('sun_longitude')
        batch_op.drop_column('sun_latitude')
        batch_op.drop_column('sun_offset_minutes')
        batch_op.drop_column('sun_event')
