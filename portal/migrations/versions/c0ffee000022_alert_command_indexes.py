"""Index the alerts' raise and clear commands: a command's page finds its alerts, and deleting a
command (retention) sets them to NULL, without reading every alert

Revision ID: c0ffee000022
Revises: c0ffee000021
Create Date: 2026-12-02 05:10:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'c0ffee000022'
down_revision = 'c0ffee000021'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index('ix_alerts_raise_command_id', ['raise_command_id'], unique=False)
        batch_op.create_index('ix_alerts_clear_command_id', ['clear_command_id'], unique=False)


def downgrade():
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_clear_command_id')
        batch_op.drop_index('ix_alerts_raise_command_id')
