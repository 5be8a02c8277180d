"""Layer choices record structured pruning: the fraction of its group's units a layer keeps.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bp_layer_choices") as batch:
        batch.add_column(sa.Column("keep", sa.Float(), nullable=False, server_default="1.0"))


def downgrade() -> None:
    with op.batch_alter_table("bp_layer_choices") as batch:
        batch.drop_column("keep")
