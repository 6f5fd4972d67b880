"""Run facts (issue 15): what the workflow type learned about a run's input, in one JSON column.

`recording_seconds` and `sample_rate_hz` were columns of every run, though only a type that
reads recordings knows them. They move into `runs.facts` under the same names (where the
cost models and reports now read them), every value kept; a run with neither keeps NULL.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

MOVED = ("recording_seconds", "sample_rate_hz")

_runs = sa.table(
    "runs",
    sa.column("id", sa.String()),
    sa.column("facts", sa.JSON(none_as_null=True)),
    *(sa.column(name, sa.Float()) for name in MOVED),
)


def _update(values: list[dict[str, Any]], **columns: Any) -> None:
    """One executemany: `values` hold `run_id` and one bind per column."""
    if values:
        statement = _runs.update().where(_runs.c.id == sa.bindparam("run_id")).values(**columns)
        op.get_bind().execute(statement, values)


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(sa.Column("facts", sa.JSON(), nullable=True))
    known = sa.or_(*(_runs.c[name].is_not(None) for name in MOVED))
    rows = op.get_bind().execute(sa.select(_runs.c.id, *(_runs.c[name] for name in MOVED)).where(known))
    moved = [
        {"run_id": run_id, "new_facts": {n: v for n, v in zip(MOVED, values, strict=True) if v is not None}}
        for run_id, *values in rows
    ]
    _update(moved, facts=sa.bindparam("new_facts", type_=sa.JSON()))
    with op.batch_alter_table("runs") as batch_op:
        for name in MOVED:
            batch_op.drop_column(name)


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        for name in MOVED:
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))
    rows = op.get_bind().execute(sa.select(_runs.c.id, _runs.c.facts).where(_runs.c.facts.is_not(None)))
    back = [
        {"run_id": run_id, **{f"old_{n}": (facts or {}).get(n) for n in MOVED}}
        for run_id, facts in rows
        if any(isinstance((facts or {}).get(n), int | float) for n in MOVED)
    ]
    _update(back, **{n: sa.bindparam(f"old_{n}") for n in MOVED})
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_column("facts")
