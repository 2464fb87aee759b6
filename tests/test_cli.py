"""The `exchange` command line."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from exchange import migrate
from exchange.audit.models import AuditEntry
from exchange.cli import main
from exchange.clients.models import ClientKey
from exchange.db import make_engine
from exchange.keys.master import new_master_key
from exchange.register.models import BorderCrossing, Returnee
from tests.server import free_port


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_help_explains_each_command() -> None:
    code, output = run("--help")
    assert code == 0
    for command in ("init", "serve", "demo-data", "schemas", "db"):
        assert f"  {command} " in output
    assert "gunicorn" in output and "EXCHANGE_" in output
    code, output = run("serve", "--help")
    assert code == 0 and "--port" in output and "gunicorn" in output


def test_init_creates_database_and_sealed_key_store_and_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "nested" / "exchange.db"
    keys = tmp_path / "keys"
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("EXCHANGE_KEYS_DIR", str(keys))
    monkeypatch.delenv("EXCHANGE_MASTER_KEY", raising=False)
    monkeypatch.delenv("EXCHANGE_MASTER_PASSPHRASE", raising=False)
    code, output = run("init")
    assert code == 1 and "master_secret_missing" in output and "EXCHANGE_MASTER_PASSPHRASE" in output
    assert not list(keys.glob("*.key"))  # nothing made without the master secret

    monkeypatch.setenv("EXCHANGE_MASTER_PASSPHRASE", "correct horse battery staple")
    monkeypatch.setenv("EXCHANGE_MASTER_KDF", "interactive")
    code, output = run("init")
    assert code == 0, output
    head = migrate.head_revision(make_engine(f"sqlite:///{database}"))
    assert f"migrated empty -> {head}" in output
    files = list(keys.glob("*.key"))
    assert len(files) == 5 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    for purpose in ("token", "envelope-sign", "audit", "envelope-enc", "storage"):
        assert f"{purpose} " in output
        [data] = [d for d in (json.loads(f.read_text()) for f in files) if d["purpose"] == purpose]
        assert set(data) == {"v", "kid", "purpose", "created_at", "wrapped_by", "sealed"}  # no clear seed
    master = json.loads((keys / "master.json").read_text())
    assert master["kdf"] == "argon2id" and "correct horse" not in (keys / "master.json").read_text()
    assert database.exists()
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    code, output = run("init")
    assert code == 0 and "already current" in output
    assert len(list(keys.glob("*.key"))) == 5  # init is idempotent: no second set of keys

    monkeypatch.setenv("EXCHANGE_MASTER_PASSPHRASE", "a wrong passphrase entirely")
    code, output = run("init")
    assert code == 1 and "master_secret_wrong" in output
    code, output = run("db", "current")
    assert f"current: {head}" in output and f"head: {head}" in output


def test_init_creates_the_database_and_its_wal_files_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The register is in clear in the SQLite files: 0600 whatever the umask, as the key files are."""
    database = tmp_path / "data" / "exchange.db"
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("EXCHANGE_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("EXCHANGE_MASTER_KEY", new_master_key())
    monkeypatch.delenv("EXCHANGE_MASTER_PASSPHRASE", raising=False)
    previous = os.umask(0o022)
    try:
        code, output = run("init")
        assert code == 0, output
        assert stat.S_IMODE(database.stat().st_mode) == 0o600
        engine = make_engine(f"sqlite:///{database}")
        with engine.begin() as connection:  # a writer keeps the -wal and -shm files while it is connected
            connection.execute(text("CREATE TABLE scratch (x INTEGER)"))
            companions = [Path(f"{database}{suffix}") for suffix in ("-wal", "-shm")]
            assert all(f.exists() for f in companions)
            assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in companions} == {
                f.name: 0o600 for f in companions}
        engine.dispose()
    finally:
        os.umask(previous)


def test_a_database_file_readable_by_others_is_narrowed_when_opened(tmp_path: Path) -> None:
    database = tmp_path / "exchange.db"
    database.touch(mode=0o644)
    os.chmod(database, 0o644)
    engine = make_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    engine.dispose()
    assert stat.S_IMODE(database.stat().st_mode) == 0o600


def test_demo_data_walks_returnees_through_the_lifecycle(
    app: Flask, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", database_url)
    monkeypatch.setenv("EXCHANGE_KEYS_DIR", app.config["KEYS_DIR"])
    code, output = run("demo-data")
    assert code == 0, output
    with Session(app.extensions["exchange.db"]) as session:
        statuses = set(session.scalars(select(Returnee.status)))
        unmatched = session.scalar(select(func.count()).select_from(BorderCrossing)
                                   .where(BorderCrossing.returnee_id.is_(None)))
    assert {"reported", "expected", "arrived", "under_vetting", "under_review", "charges_filed",
            "reintegrating"} <= statuses
    assert unmatched == 1
    assert "DETAIN" in output and "RT-" in output
    code, output = run("demo-data")
    assert code == 0 and "nothing loaded" in output
    with Session(app.extensions["exchange.db"]) as session:
        assert session.scalar(select(func.count()).select_from(Returnee)) == 9


def test_schemas_check_passes_on_the_committed_contracts() -> None:
    code, output = run("schemas", "check")
    assert code == 0, output


def test_clients_lifecycle_from_the_command_line(
    app: Flask, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", database_url)
    monkeypatch.setenv("EXCHANGE_KEYS_DIR", app.config["KEYS_DIR"])
    monkeypatch.setenv("EXCHANGE_OFFICER", "TJ-SEC-0007")
    keys = tmp_path / "partner"
    code, output = run("clients", "keygen", "--out", str(keys))
    assert code == 0, output
    assert stat.S_IMODE((keys / "auth.jwk.json").stat().st_mode) == 0o600
    assert {f.name for f in keys.iterdir()} == {"auth.jwk.json", "sign.jwk.json", "enc.jwk.json"}
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in keys.iterdir())
    assert json.loads((keys / "enc.jwk.json").read_text())["crv"] == "X25519"
    assert run("clients", "keygen", "--out", str(keys))[0] == 1  # never overwrites a key
    code, output = run("clients", "add", "--client-id", "border-panji-poyon", "--agency", "border",
                       "--name", "Border post Panji Poyon", "--auth-key", str(keys / "auth.jwk.json"),
                       "--sign-key", str(keys / "sign.jwk.json"))
    assert code == 2 and "no enc key" in output  # a client without an enc key could never read an answer
    code, output = run("clients", "add", "--client-id", "border-panji-poyon", "--agency", "border",
                       "--name", "Border post Panji Poyon", "--key-dir", str(tmp_path / "elsewhere"))
    assert code == 2 and f"exchange clients keygen --out {tmp_path / 'elsewhere'}" in output
    code, output = run("clients", "add", "--client-id", "border-panji-poyon", "--agency", "border",
                       "--name", "Border post Panji Poyon", "--key-dir", str(keys))
    assert code == 0, output
    assert "returnees:screen" in output and "crossings:write" in output
    code, output = run("clients", "add", "--client-id", "border-x", "--agency", "border", "--name", "x",
                       "--scope", "returnees:write", "--key-dir", str(keys))
    assert code == 1 and "Not a scope of this agency" in output
    code, output = run("clients", "suspend", "border-panji-poyon", "--reason", "laptop stolen")
    assert code == 0 and "suspended" in output
    code, output = run("clients", "show", "border-panji-poyon")
    assert "suspended — laptop stolen" in output and "auth key" in output
    assert "Border post" not in run("clients", "list", "--status", "active")[1]
    code, output = run("clients", "resume", "border-panji-poyon")
    assert code == 0 and "active" in output
    code, output = run("clients", "show", "nobody")
    assert code == 1 and "not_found" in output
    private = json.loads((keys / "auth.jwk.json").read_text())
    with Session(app.extensions["exchange.db"]) as session:
        stored = [(k.purpose, k.x) for k in session.scalars(select(ClientKey).order_by(ClientKey.purpose))]
    assert [purpose for purpose, _ in stored] == ["auth", "enc", "sign"]
    assert ("auth", private["x"]) in stored  # the public part is registered ...
    assert all(private["d"] not in x for _, x in stored)  # ... and the private part never leaves the partner
    code, output = run("clients", "add", "--client-id", "border-panji-poyon", "--agency", "border",
                       "--name", "Border post Panji Poyon", "--key-dir", str(keys))
    assert code == 1 and "refused (" in output
    # every change a security officer makes from the command line is in the audit log, refusals included
    with Session(app.extensions["exchange.db"]) as session:
        entries = [json.loads(leaf) for leaf in session.scalars(select(AuditEntry.leaf).order_by(AuditEntry.idx))]
    cli = [(e["action"], e["outcome"], e["officer"], e["record_ids"]) for e in entries if e["method"] == "CLI"]
    assert cli == [("client.register", "success", "TJ-SEC-0007", ["border-panji-poyon"]),
                   ("client.suspend", "success", "TJ-SEC-0007", ["border-panji-poyon"]),
                   ("client.resume", "success", "TJ-SEC-0007", ["border-panji-poyon"]),
                   ("client.register", "failure", "TJ-SEC-0007", [])]


def test_help_shows_the_projects_commands_and_none_of_flasks_options() -> None:
    code, output = run("--help")
    assert code == 0
    for command in ("call", "clients", "audit", "keys", "demo", "routes", "shell"):
        assert f"  {command} " in output
    assert "--env-file" not in output and "-e," not in output and "--app" not in output


def test_serve_really_serves(file_app: Flask, database_url: str, tmp_path: Path) -> None:
    """`exchange serve` starts gunicorn (not Flask's `app.run`, a no-op under a CLI) and answers on its port."""
    port = free_port()
    env = {**os.environ, "EXCHANGE_DATABASE_URL": database_url, "EXCHANGE_KEYS_DIR": file_app.config["KEYS_DIR"],
           "EXCHANGE_ISSUER": f"http://127.0.0.1:{port}", "EXCHANGE_LOG_LEVEL": "WARNING"}
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-c", "from exchange.cli import main; main()", "serve",
                                    "--port", str(port), "--workers", "1"], env=env, stdout=sink,
                                   stderr=subprocess.STDOUT)
        try:
            answer = None
            for _ in range(300):
                assert process.poll() is None, log.read_text()
                try:
                    answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            assert answer is not None and answer.status_code == 200, log.read_text()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    assert f"on http://127.0.0.1:{port} with 1 workers" in log.read_text()


def test_serve_refuses_to_start_without_the_master_secret(
    file_app: Flask, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", database_url)
    monkeypatch.delenv("EXCHANGE_MASTER_KEY")
    monkeypatch.delenv("EXCHANGE_MASTER_PASSPHRASE", raising=False)
    code, output = run("serve", "--port", str(free_port()))
    assert code == 2 and "master_secret_missing" in output and "Traceback" not in output


def test_audit_verify_without_a_database_says_so_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", f"sqlite:///{tmp_path / 'absent' / 'exchange.db'}")
    code, output = run("audit", "verify", "--state", str(tmp_path / "state.json"))
    assert code == 2 and "Traceback" not in output
    assert f"no database at {tmp_path / 'absent' / 'exchange.db'}" in output
    assert "EXCHANGE_DATABASE_URL" in output and "exchange init" in output
