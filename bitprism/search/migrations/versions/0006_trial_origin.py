"""Trials record who proposed them (fp32 reference, uniform seed, warm start, sampler).

Revision ID: 0006
Revises: 0005

Older trials are classified from what they stored: the reference by its missing number, a
warm-start seed by the prediction only seeds carry; the rest (uniform seeds included, which
left no mark) count as the sampler's.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_trials = sa.table(
    "bp_trials", sa.column("id", sa.Integer), sa.column("number", sa.Integer), sa.column("origin")
)
_metrics = sa.table("bp_metrics", sa.column("trial_id", sa.Integer), sa.column("name", sa.String))


def upgrade() -> None:
    with op.batch_alter_table("bp_trials") as batch:
        batch.add_column(
            sa.Column("origin", sa.String(16), nullable=False, server_default="sampler")
        )
    op.execute(_trials.update().where(_trials.c.number.is_(None)).values(origin="reference"))
    seeded = sa.select(_metrics.c.trial_id).where(_metrics.c.name == "predicted_layer_smaller")
    op.execute(_trials.update().where(_trials.c.id.in_(seeded)).values(origin="warm_start"))


def downgrade() -> None:
    with op.batch_alter_table("bp_trials") as batch:
        batch.drop_column("origin")
