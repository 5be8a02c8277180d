"""Alembic environment for bitprism's own tables (run through ``bitprism.search.store``)."""

from __future__ import annotations

from alembic import context

from bitprism.search.schema import VERSION_TABLE, Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,
    include_name=lambda name, type_, parent: type_ != "table" or (name or "").startswith("bp_"),
)
with context.begin_transaction():
    context.run_migrations()
