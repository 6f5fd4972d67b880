"""Costs and cost models (issue 5): each run's workflow and charge; imported history,
trained models and logged estimates.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

RUN_COLUMNS = (
    ("workflow", sa.String(length=200)),
    ("cost", sa.Float()),
    ("currency", sa.String(length=8)),
    ("price_table", sa.String(length=100)),
    ("capacity", sa.String(length=16)),
    ("billed_seconds", sa.Float()),
    ("vcpus", sa.Float()),
    ("memory_gb", sa.Float()),
)


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        for name, kind in RUN_COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))
    op.create_table(
        "imported_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workflow", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("input_bytes", sa.BigInteger(), nullable=False),
        sa.Column("output_bytes", sa.BigInteger(), nullable=False),
        sa.Column("wall_seconds", sa.Float(), nullable=False),
        sa.Column("cpu_seconds", sa.Float(), nullable=False),
        sa.Column("peak_rss_bytes", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=True),
        sa.Column("machine", sa.String(length=200), nullable=True),
        sa.Column("recording_seconds", sa.Float(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("imported_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_imported_runs_workflow", "imported_runs", ["workflow", "started_at"])
    op.create_table(
        "cost_models",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workflow", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("trained_from", sa.DateTime(), nullable=False),
        sa.Column("trained_to", sa.DateTime(), nullable=False),
        sa.Column("train_runs", sa.Integer(), nullable=False),
        sa.Column("test_runs", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workflow", "version"),
    )
    op.create_table(
        "cost_estimates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("workflow", sa.String(length=200), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=True),
        sa.Column("file_id", sa.Integer(), nullable=True),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("predicted", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("actual", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_cost_estimates_run", "cost_estimates", ["run_id"])
    op.create_index("ix_cost_estimates_file", "cost_estimates", ["file_id"])


def downgrade() -> None:
    op.drop_index("ix_cost_estimates_file", table_name="cost_estimates")
    op.drop_index("ix_cost_estimates_run", table_name="cost_estimates")
    op.drop_table("cost_estimates")
    op.drop_table("cost_models")
    op.drop_index("ix_imported_runs_workflow", table_name="imported_runs")
    op.drop_table("imported_runs")
    with op.batch_alter_table("runs") as batch_op:
        for name, _ in reversed(RUN_COLUMNS):
            batch_op.drop_column(name)
