"""The migrations build exactly the schema the models describe, on the database under test."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask import Flask
from sqlalchemy import text

from exchange import migrate
from exchange.db import Base, make_engine


def test_database_is_at_head_and_matches_the_models(app: Flask) -> None:
    engine = app.extensions["exchange.db"]
    assert migrate.current_revision(engine) == migrate.head_revision(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_a_request_filed_before_dual_control_between_clients_expires_with_the_upgrade(tmp_path: Path) -> None:
    """0007: a pending approval names only an officer claim, not the client that filed it: it must not stay
    approvable."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.upgrade(engine, "0006_audit_queue")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO key_approvals (id, operation, kid, status, requested_by, requested_at, expires_at) VALUES "
            "(:id, 'revoke', 'k1', 'pending', 'TJ-SEC-0001', :now, :later)"),
            {"id": uuid.uuid4().hex, "now": datetime.now(UTC), "later": datetime.now(UTC) + timedelta(minutes=15)})
    migrate.upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT status, requested_by_client FROM key_approvals")).all()
    assert [tuple(r) for r in rows] == [("expired", None)]
    engine.dispose()
