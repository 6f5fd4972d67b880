"""The cost models' key gets its own name: `workflow` -> `pipeline` (a pipeline id such as
`skdh-0.17.18-5c1e0a9b`), so that "workflow" only means the workflow type.

The column is renamed in every table that holds the key (runs, imported runs, cost models,
cost estimates), with the index and unique constraint that name it; every value is kept.
SQLite copies each table (batch mode), PostgreSQL renames in place.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = ("runs", "imported_runs", "cost_models", "cost_estimates")


def _rename(old: str, new: str) -> None:
    op.drop_index(f"ix_imported_runs_{old}", table_name="imported_runs")
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.alter_column(old, new_column_name=new, existing_type=sa.String(length=200))
    op.create_index(f"ix_imported_runs_{new}", "imported_runs", [new, "started_at"])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # The unique (key, version) of cost_models keeps PostgreSQL's name for it, which names
        # the column; SQLite's copy of the table has an unnamed one, on the renamed column.
        for constraint in sa.inspect(bind).get_unique_constraints("cost_models"):
            if constraint["column_names"] == [new, "version"] and constraint["name"]:
                op.execute(
                    sa.text(
                        f'ALTER TABLE cost_models RENAME CONSTRAINT "{constraint["name"]}" '
                        f'TO "cost_models_{new}_version_key"'
                    )
                )


def upgrade() -> None:
    _rename("workflow", "pipeline")


def downgrade() -> None:
    _rename("pipeline", "workflow")
