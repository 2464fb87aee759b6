"""Alembic environment: the engine comes from `exchange.migrate.alembic_config`, the metadata from the models."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Engine

import exchange.audit.models  # noqa: F401  (each import registers its tables on the metadata)
import exchange.auth.models  # noqa: F401
import exchange.clients.models  # noqa: F401
import exchange.envelope.models  # noqa: F401
import exchange.events.models  # noqa: F401
import exchange.keys.models  # noqa: F401
import exchange.register.models  # noqa: F401
from exchange.db import Base

engine: Engine = context.config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
