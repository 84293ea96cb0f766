"""commands: no separate schedule_id index

The unique (schedule_id, due_at) constraint leads with schedule_id and answers the same
look-ups (a schedule's commands; SET NULL when a schedule is deleted), so the second index only
cost every insert (10,000 commands from one scheduler pass) one more B-tree to maintain.

Revision ID: d24df29a6038
Revises: a8ae967412df
Create Date: 2026-11-30 23:17:02.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = 'd24df29a6038'
down_revision = 'a8ae967412df'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('commands', schema=None) as batch_op:
        batch_op.drop_index('ix_commands_schedule_id')


def downgrade():
    with op.batch_alter_table('commands', schema=None) as batch_op:
        batch_op.create_index('ix_commands_schedule_id', ['schedule_id'], unique=False)
