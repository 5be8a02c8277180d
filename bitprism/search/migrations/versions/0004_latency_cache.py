"""Timed layer forms for the warm start's latency costs.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bp_latency_cache",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("milliseconds", sa.Float(), nullable=False),
        sa.Column("backend", sa.String(64), nullable=False),
        sa.Column("runtime_version", sa.String(128), nullable=False),
        sa.Column("threads", sa.Integer(), nullable=False),
        sa.Column("precision", sa.String(16), nullable=False),
        sa.Column("cpu", sa.Text(), nullable=False),
        sa.Column("op", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("bp_latency_cache")
