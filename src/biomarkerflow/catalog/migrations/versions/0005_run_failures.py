"""Failures in words (issue 14): each run's failed step and traceback, and its notices
(SKDH warnings that changed the results).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

RUN_COLUMNS = (
    ("failed_step", sa.String(length=200)),
    ("traceback", sa.Text()),
    ("notices", sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        for name, kind in RUN_COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        for name, _ in reversed(RUN_COLUMNS):
            batch_op.drop_column(name)
