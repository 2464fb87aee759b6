"""The migrations build exactly the schema the models describe, on the database under test."""

from __future__ import annotations

import json
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


def test_a_client_with_every_scope_of_its_agency_keeps_every_scope_with_events(tmp_path: Path) -> None:
    """0010: `events:read` joins the full clients' scopes (the partner library asks for all by default); a client
    granted less is left as it was."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.upgrade(engine, "0008_envelope_outcomes")
    granted = {"interior-full": ("interior", ["returnees:read", "returnees:write"]),
               "interior-reader": ("interior", ["returnees:read"]),
               "border-full": ("border", ["crossings:write", "returnees:screen"]),
               "auditor": ("auditor", ["audit:read"])}
    with engine.begin() as connection:
        for client_id, (agency, scopes) in granted.items():
            connection.execute(text(
                "INSERT INTO clients (id, client_id, agency, name, scopes, status, created_at, updated_at, version) "
                "VALUES (:id, :client_id, :agency, 'c', :scopes, 'active', :now, :now, 1)"),
                {"id": uuid.uuid4().hex, "client_id": client_id, "agency": agency, "scopes": json.dumps(scopes),
                 "now": datetime.now(UTC)})
    migrate.upgrade(engine)
    with engine.connect() as connection:
        after = {r.client_id: json.loads(r.scopes) for r in connection.execute(text("SELECT client_id, scopes "
                                                                                    "FROM clients"))}
    assert after == {"interior-full": ["events:read", "returnees:read", "returnees:write"],
                     "interior-reader": ["returnees:read"],
                     "border-full": ["crossings:write", "events:read", "returnees:screen"],
                     "auditor": ["audit:read"]}
    engine.dispose()
