"""Jobs remember their model's fingerprint and which driver holds them (a lease).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bp_jobs") as batch:
        batch.add_column(sa.Column("model_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("driver", sa.String(160), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bp_jobs") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("driver")
        batch.drop_column("model_hash")
