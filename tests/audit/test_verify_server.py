"""`exchange audit verify --server`: an auditor verifies a running exchange's log through the API (tokens, DPoP,
sealed answers), with trust on first use, and is told the first bad index when a row was changed in the database."""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import update
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from exchange.audit.models import AuditEntry
from exchange.cli import main
from exchange.clients.services import ClientService
from exchange.partner.api import ExchangeClient
from exchange.partner.envelopes import PartnerKeys
from tests.conftest import returnee_body


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def served(make_app: Callable[..., Flask]) -> Iterator[tuple[Flask, str]]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    app = make_app(AUTHENTICATOR=None, ISSUER=base, UNSAFE_PLAIN_JSON_BODIES=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, base
    finally:
        server.shutdown()
        thread.join(timeout=10)


def _register(app: Flask, agency: str, client_id: str, key_dir: Path) -> PartnerKeys:
    from exchange.protocol.policy import AGENCY_SCOPES

    keys = PartnerKeys.generate()
    keys.save(key_dir)
    with Session(app.extensions["exchange.db"]) as session:
        ClientService(session=session).register(
            {"client_id": client_id, "agency": agency, "name": f"{agency} test",
             "scopes": sorted(AGENCY_SCOPES[agency]), "keys": keys.registration()}, officer="TJ-SEC-1")
        session.commit()
    return keys


def _verify(base: str, key_dir: Path, state: Path, client_id: str = "auditor-1") -> tuple[int, str]:
    result = CliRunner().invoke(main, ["audit", "verify", "--server", base, "--client-id", client_id,
                                       "--client-keys", str(key_dir), "--state", str(state),
                                       "--officer", "TJ-AUD-007"], catch_exceptions=False)
    return result.exit_code, result.output


def test_an_auditor_verifies_a_running_exchange(served: tuple[Flask, str], tmp_path: Path) -> None:
    app, base = served
    _register(app, "auditor", "auditor-1", tmp_path / "auditor")
    _register(app, "interior", "interior-1", tmp_path / "interior")
    with ExchangeClient.from_files(base, "interior-1", "interior", tmp_path / "interior",
                                   purpose="register-maintenance") as interior:
        created = interior.returnees.create(returnee_body())
        interior.returnees.get(created.data["id"])
    state = tmp_path / "state.json"

    code, output = _verify(base, tmp_path / "auditor", state)
    assert code == 0, output
    verified = int(re.search(r"verified (\d+) entries", output)[1])  # type: ignore[index]
    assert verified >= 4 and "first use" in output  # two tokens and two calls at least

    code, output = _verify(base, tmp_path / "auditor", state)  # the auditor's own reads made the log grow
    assert code == 0, output
    assert int(re.search(r"verified (\d+) entries", output)[1]) > verified  # type: ignore[index]
    assert f"consistent with the {verified} entries" in output

    with Session(app.extensions["exchange.db"]) as session:  # someone edits entry 2 in the database
        leaf = session.get(AuditEntry, 2)
        assert leaf is not None
        session.execute(update(AuditEntry).where(AuditEntry.idx == 2).values(
            leaf=leaf.leaf.replace(b'"outcome":"success"', b'"outcome":"failure"')))
        session.commit()
    code, output = _verify(base, tmp_path / "auditor", state)
    assert code == 1, output
    assert "first bad index 2" in output


def test_a_client_that_is_not_an_auditor_is_refused(served: tuple[Flask, str], tmp_path: Path) -> None:
    app, base = served
    _register(app, "border", "border-1", tmp_path / "border")
    code, output = _verify(base, tmp_path / "border", tmp_path / "state.json", client_id="border-1")
    assert code == 1, output
    assert "400 invalid_scope" in output  # the token request asks for audit:read, which a border client lacks
    assert not (tmp_path / "state.json").exists()


def test_server_needs_the_auditor_client(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["audit", "verify", "--server", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "--client-id and --client-keys" in result.output
