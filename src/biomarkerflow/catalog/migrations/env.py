"""Alembic environment: migrations run on the connection the catalog hands over.

`biomarkerflow.catalog.schema.upgrade` calls this; there is no alembic.ini to keep in sync.
"""

from __future__ import annotations

from alembic import context

from biomarkerflow.catalog.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things: batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
