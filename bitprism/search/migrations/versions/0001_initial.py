"""Initial schema: jobs, trials, layer choices, metrics, artifacts.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=16)


def upgrade() -> None:
    op.create_table(
        "bp_jobs",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("workload", sa.String(512), nullable=False),
        sa.Column(
            "status",
            _enum("jobstatus", "pending", "running", "done", "failed", "interrupted"),
            nullable=False,
        ),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("space", sa.JSON(), nullable=True),
        sa.Column("study_name", sa.String(160), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "bp_trials",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "job_id",
            sa.String(128),
            sa.ForeignKey("bp_jobs.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("number", sa.Integer(), nullable=True),
        sa.Column("role", _enum("trialrole", "search", "reference"), nullable=False),
        sa.Column(
            "state",
            _enum("trialstate", "running", "complete", "failed", "interrupted"),
            nullable=False,
        ),
        sa.Column("candidate_hash", sa.String(32), nullable=False, index=True),
        sa.Column("verified", sa.Boolean(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("job_id", "number", name="uq_bp_trials_job_number"),
    )
    op.create_table(
        "bp_layer_choices",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "trial_id",
            sa.Integer(),
            sa.ForeignKey("bp_trials.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("layer", sa.String(512), nullable=False),
        sa.Column("weight_bits", sa.Integer(), nullable=False),
        sa.Column("sparsity", sa.Float(), nullable=False),
        sa.Column("rank_fraction", sa.Float(), nullable=False),
        sa.UniqueConstraint("trial_id", "layer", name="uq_bp_layer_choices"),
    )
    op.create_table(
        "bp_metrics",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "trial_id",
            sa.Integer(),
            sa.ForeignKey("bp_trials.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.UniqueConstraint("trial_id", "name", name="uq_bp_metrics"),
    )
    op.create_table(
        "bp_artifacts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "job_id",
            sa.String(128),
            sa.ForeignKey("bp_jobs.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "trial_id",
            sa.Integer(),
            sa.ForeignKey("bp_trials.id", ondelete="CASCADE"),
            nullable=True,
            index=True,
        ),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    for table in ("bp_artifacts", "bp_metrics", "bp_layer_choices", "bp_trials", "bp_jobs"):
        op.drop_table(table)
