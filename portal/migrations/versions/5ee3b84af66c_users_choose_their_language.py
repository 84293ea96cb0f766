"""users choose their language

users.locale holds the language of the user's pages ("de", "fr", ...); NULL, the value every
existing user gets, follows the browser's Accept-Language.

Revision ID: 5ee3b84af66c
Revises: d24df29a6038
Create Date: 2026-12-01 15:07:54.423886

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '5ee3b84af66c'
down_revision = 'd24df29a6038'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('locale', sa.String(length=8), nullable=True))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('locale')
