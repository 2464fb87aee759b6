"""The console reading a running exchange through the partner library with the auditor's own client: trust on first
use of the published key, then incremental loads (the kept index re-verified, only new entries fetched)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from exchange.audit.models import AuditEntry
from exchange.console.cli import server_source
from exchange.console.loader import Loader, Settings
from exchange.console.store import Index, Query
from exchange.partner.api import ExchangeClient
from tests.audit.test_verify_server import _register, served  # noqa: F401 - `served` is a fixture
from tests.conftest import returnee_body


def load(base: str, tmp_path: Path) -> Loader:
    settings = Settings(index_path=tmp_path / "data" / "index.sqlite", state_path=tmp_path / "state.json")
    settings.index_path.parent.mkdir(exist_ok=True)
    make, remote = server_source(base, "auditor-1", tmp_path / "auditor", "TJ-AUD-007", (), settings.state_path)
    loader = Loader(settings, make, remote=remote)
    loader.run()
    return loader


def test_the_console_loads_a_running_exchange_incrementally(served: tuple[Flask, str],  # noqa: F811
                                                            tmp_path: Path) -> None:
    app, base = served
    _register(app, "auditor", "auditor-1", tmp_path / "auditor")
    _register(app, "interior", "interior-1", tmp_path / "interior")
    with ExchangeClient.from_files(base, "interior-1", "interior", tmp_path / "interior",
                                   purpose="register-maintenance") as interior:
        created = interior.returnees.create(returnee_body())
        interior.returnees.get(created.data["id"])
        first = load(base, tmp_path).status.badge
        assert first is not None and first["ok"] is True, first
        assert any("first use" in c for c in first["checks"])
        interior.returnees.get(created.data["id"])
    second = load(base, tmp_path).status.badge
    assert second is not None and second["ok"] is True, second
    assert second["size"] > first["size"] and second["consistency"]["size"] == first["size"]
    assert f"{first['size']} entries re-verified from the local index" in " ".join(second["checks"])
    history = Index(tmp_path / "data" / "index.sqlite").search(Query(filters={}, record_id=created.data["id"]))
    assert [e["action"] for e in history["items"]][-1] == "collect" and len(history["items"]) >= 3
    # the kept copy changed on the auditor's disk: caught (its stored leaf hash no longer matches), then rebuilt
    with sqlite3.connect(tmp_path / "data" / "index.sqlite") as db:
        db.execute("UPDATE leaves SET leaf = (SELECT leaf FROM leaves WHERE idx = 3) WHERE idx = 2")
    third = load(base, tmp_path).status.badge
    assert third is not None and third["ok"] is False and third["first_bad_index"] == 2
    fourth = load(base, tmp_path).status.badge
    assert fourth is not None and fourth["ok"] is True and not any("re-verified" in c for c in fourth["checks"])
    # an index kept in another version's layout is not resumed either: rebuilt from the source
    with sqlite3.connect(tmp_path / "data" / "index.sqlite") as db:
        db.execute("UPDATE meta SET value = 'an older one' WHERE key = 'layout'")
    fourth = load(base, tmp_path).status.badge
    assert fourth is not None and fourth["ok"] is True and not any("re-verified" in c for c in fourth["checks"])
    # a new entry changed in the exchange's database before the console fetched it: the load names it
    with ExchangeClient.from_files(base, "interior-1", "interior", tmp_path / "interior",
                                   purpose="register-maintenance") as interior:
        interior.returnees.get(created.data["id"])
    with Session(app.extensions["exchange.db"]) as session:
        leaf = session.scalar(select(AuditEntry.leaf).where(AuditEntry.idx == 3))
        session.execute(update(AuditEntry).where(AuditEntry.idx == fourth["size"]).values(leaf=leaf))
        session.commit()
    fifth = load(base, tmp_path).status.badge
    assert fifth is not None and fifth["ok"] is False and fifth["first_bad_index"] == fourth["size"]
