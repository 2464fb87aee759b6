"""The migrations build exactly the schema the models describe, on the database under test."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask import Flask

from exchange import migrate
from exchange.db import Base


def test_database_is_at_head_and_matches_the_models(app: Flask) -> None:
    engine = app.extensions["exchange.db"]
    assert migrate.current_revision(engine) == migrate.head_revision(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    assert diff == []
