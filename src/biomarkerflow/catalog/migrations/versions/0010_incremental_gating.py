"""Incremental gating (issue 19): what each study's last requirement check saw, and when a
waiting file must be checked again.

`study_gates` keeps, per study, the metadata files' hash as last ingested, a signature of
the config the check used and each subject's gate key, so a `process`/`watch` round re-checks
only the files whose subject, file or config changed. `files.recheck_at` is when a WAITING
file's `stable_seconds` wait ends (the one requirement that changes with time alone). Files
by study and subject: a subject's waiting files, and files counted per subject, from an index.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "study_gates",
        sa.Column("study_id", sa.String(length=200), nullable=False),
        sa.Column("metadata_sha256", sa.String(length=64), nullable=True),
        sa.Column("signature", sa.String(length=64), nullable=True),
        sa.Column("subjects", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("gated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"]),
        sa.PrimaryKeyConstraint("study_id"),
    )
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("recheck_at", sa.DateTime(), nullable=True))
        batch.create_index("ix_files_recheck", ["study_id", "recheck_at"])
        batch.create_index("ix_files_subject", ["study_id", "subject"])


def downgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.drop_index("ix_files_subject")
        batch.drop_index("ix_files_recheck")
        batch.drop_column("recheck_at")
    op.drop_table("study_gates")
