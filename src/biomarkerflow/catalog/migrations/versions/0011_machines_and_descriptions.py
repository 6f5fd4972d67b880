"""Cost features (issue 20): the machine a run used, and what an imported pipeline is.

`runs.machine` holds the worker machine's cores, memory and CPU model, so estimates can be
asked for a given machine. Imported runs may name their machine's figures, the file's
sample rate and kind, and the pipeline's workflow type, steps and package, which estimates
borrowed across pipelines learn from.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("machine", sa.JSON(none_as_null=True), nullable=True))
    with op.batch_alter_table("imported_runs") as batch:
        batch.add_column(sa.Column("sample_rate_hz", sa.Float(), nullable=True))
        batch.add_column(sa.Column("device", sa.String(length=50), nullable=True))
        batch.add_column(sa.Column("machine_cores", sa.Float(), nullable=True))
        batch.add_column(sa.Column("machine_memory_bytes", sa.Float(), nullable=True))
        batch.add_column(sa.Column("machine_cpu", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("workflow_type", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("steps", sa.JSON(none_as_null=True), nullable=True))
        batch.add_column(sa.Column("package", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("imported_runs") as batch:
        for name in (
            "package",
            "steps",
            "workflow_type",
            "machine_cpu",
            "machine_memory_bytes",
            "machine_cores",
            "device",
            "sample_rate_hz",
        ):
            batch.drop_column(name)
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("machine")
