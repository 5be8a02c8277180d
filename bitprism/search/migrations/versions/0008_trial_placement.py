"""Trials record where they were measured: the host (and Ray node) that evaluated them and
the host and CPU that timed them.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bp_trials") as batch:
        batch.add_column(sa.Column("evaluated_on", sa.String(300), nullable=True))
        batch.add_column(sa.Column("timed_on", sa.String(400), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bp_trials") as batch:
        batch.drop_column("timed_on")
        batch.drop_column("evaluated_on")
