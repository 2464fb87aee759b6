"""`exchange keys ...`: a security officer's session at the server's command line, dual control included."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from exchange.audit.models import AuditEntry
from exchange.cli import main
from exchange.clients.services import ClientService
from exchange.identity import Caller
from exchange.keys.ring import KeyRing, key_ring
from exchange.partner.credentials import PartnerKey
from exchange.protocol.policy import AGENCY_SCOPES, PURPOSES


def run(*args: str, officer: str | None = "TJ-SEC-0001") -> tuple[int, str]:
    extra = ["--officer", officer] if officer else []
    result = CliRunner().invoke(main, [*args, *extra], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def cli_env(file_app: Flask, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", database_url)
    monkeypatch.setenv("EXCHANGE_KEY_CACHE_SECONDS", "0")
    return file_app


@dataclass(frozen=True)
class Officer:
    """A security officer at the server: their officer id, their own security client and its key directory."""

    officer: str
    client_id: str
    key_dir: Path

    def args(self) -> list[str]:
        return ["--client-id", self.client_id, "--key-dir", str(self.key_dir)]


MakeOfficer = Callable[..., Officer]


@pytest.fixture
def security_officer(cli_env: Flask, tmp_path: Path) -> MakeOfficer:
    """Factory: registers a client (security with keys:admin unless told) whose private auth key is in its key dir."""

    def make(officer: str, client_id: str, *, agency: str = "security", key: PartnerKey | None = None) -> Officer:
        key = key or PartnerKey.generate()
        key_dir = tmp_path / client_id
        key_dir.mkdir()
        key.save(key_dir / "auth.jwk.json")
        with Session(cli_env.extensions["exchange.db"]) as session:
            ClientService(session=session).register(
                {"client_id": client_id, "agency": agency, "name": client_id, "scopes": sorted(AGENCY_SCOPES[agency]),
                 "keys": [{"purpose": "auth", "jwk": key.public_jwk}]}, officer="TJ-SEC-REG")
            session.commit()
        return Officer(officer=officer, client_id=client_id, key_dir=key_dir)

    return make


@pytest.fixture
def first(security_officer: MakeOfficer) -> Officer:
    return security_officer("TJ-SEC-0001", "security-desk-1")


@pytest.fixture
def second(security_officer: MakeOfficer) -> Officer:
    return security_officer("TJ-SEC-0002", "security-desk-2")


def entries(app: Flask) -> list[dict[str, object]]:
    with Session(app.extensions["exchange.db"]) as session:
        return [json.loads(leaf) for leaf in session.scalars(select(AuditEntry.leaf).order_by(AuditEntry.idx))]


def test_list_rotate_and_show_print_readable_tables(cli_env: Flask) -> None:
    code, output = run("keys", "list", officer=None)
    assert code == 0 and "5 exchange keys" in output and output.count("active") == 5
    code, output = run("keys", "rotate", "token")
    assert code == 0, output
    assert "pending" in output and "retiring" not in output  # the new key activates in a few seconds
    ring: KeyRing = key_ring(cli_env)
    pending = [k for k in ring.snapshot(refresh=True).keys if k.purpose == "token" and k.kid not in
               {v.kid for v in ring.verification_keys("token")[:1]}]
    code, output = run("keys", "show", pending[0].kid, officer=None)
    assert code == 0 and "token key" in output and "held" in output
    rotated = [e for e in entries(cli_env) if e["action"] == "key.rotate"]
    assert len(rotated) == 1 and rotated[0]["officer"] == "TJ-SEC-0001" and rotated[0]["outcome"] == "success"


def _approval_id(output: str) -> str:
    found = re.search(r"id ([0-9a-f-]{36})", output.replace("\n", ""))
    assert found is not None, output
    return found.group(1)


def test_revocation_from_the_command_line_needs_a_second_security_client(
    cli_env: Flask, first: Officer, second: Officer
) -> None:
    ring: KeyRing = key_ring(cli_env)
    victim = ring.active("envelope-sign").kid
    code, output = run("keys", "revoke", victim, "--reason", "operator laptop stolen", *first.args())
    assert code == 0 and "pending" in output and "security-desk-1" in output
    approval_id = _approval_id(output)
    # the same client, whatever officer it names
    for officer in ("TJ-SEC-0001", "TJ-SEC-0002", "TJ-SEC-9999"):
        code, output = run("keys", "approve", approval_id, *first.args(), officer=officer)
        assert code == 1 and "dual_control_same_principal" in output, output
    assert ring.snapshot(refresh=True).by_kid(victim).revoked_at is None  # type: ignore[union-attr]
    code, output = run("keys", "approve", approval_id, *second.args(), officer="TJ-SEC-0002")
    assert code == 0 and "executed" in output and "revoked" in output and "security-desk-2" in output
    assert ring.snapshot(refresh=True).by_kid(victim).revoked_at is not None  # type: ignore[union-attr]
    assert ring.active("envelope-sign").kid != victim
    actions = [(e["action"], e["outcome"], e["officer"], e["client_id"]) for e in entries(cli_env)
               if str(e["action"]).startswith("key.")]
    assert actions == [("key.revoke_request", "success", "TJ-SEC-0001", "security-desk-1"),
                       ("key.approve", "failure", "TJ-SEC-0001", "security-desk-1"),
                       ("key.approve", "failure", "TJ-SEC-0002", "security-desk-1"),
                       ("key.approve", "failure", "TJ-SEC-9999", "security-desk-1"),
                       ("key.approve", "success", "TJ-SEC-0002", "security-desk-2")]


def test_the_command_line_halves_must_be_signed_by_a_registered_security_clients_own_key(
    cli_env: Flask, first: Officer, second: Officer, security_officer: MakeOfficer, tmp_path: Path
) -> None:
    ring: KeyRing = cli_env.extensions["exchange.keystore"]
    victim = ring.active("envelope-sign").kid
    # filing needs a security client too: database access alone is nobody
    code, output = run("keys", "revoke", victim, "--reason", "x")
    assert code == 2 and "--client-id" in output
    code, output = run("keys", "revoke", victim, "--reason", "x", "--client-id", second.client_id, "--key-dir",
                       str(first.key_dir))
    assert code == 1 and "dual_control_key_invalid" in output
    code, output = run("keys", "revoke", victim, "--reason", "stolen", *first.args())
    approval_id = _approval_id(output)

    def refused(*args: str) -> str:
        code, output = run("keys", "approve", approval_id, *args, officer="TJ-SEC-0002")
        assert code == 1, output
        assert ring.snapshot(refresh=True).by_kid(victim).revoked_at is None  # type: ignore[union-attr]
        return output

    # naming the second client while holding the first one's key
    assert "dual_control_key_invalid" in refused("--client-id", second.client_id, "--key-dir", str(first.key_dir))
    # a second client registered with the first one's key is the same principal
    clone = security_officer("TJ-SEC-0003", "security-clone", key=PartnerKey.load(first.key_dir / "auth.jwk.json"))
    assert "dual_control_same_principal" in refused(*clone.args())
    # a client of another agency, an unknown client, a public key only, no key at all
    border = security_officer("TJ-PS-1", "border-desk", agency="border")
    assert "dual_control_key_invalid" in refused(*border.args())
    assert "dual_control_key_invalid" in refused("--client-id", "nobody", "--key-dir", str(second.key_dir))
    public = tmp_path / "public-only"
    public.mkdir()
    key = PartnerKey.load(second.key_dir / "auth.jwk.json")
    (public / "auth.jwk.json").write_text(json.dumps(key.public_jwk), encoding="ascii")
    assert "dual_control_key_invalid" in refused("--client-id", second.client_id, "--key-dir", str(public))
    assert "dual_control_key_invalid" in refused("--client-id", second.client_id, "--key-dir", str(tmp_path / "no"))
    code, output = run("keys", "approve", approval_id, officer="TJ-SEC-0002")
    assert code == 2 and "--client-id" in output and "--key-dir" in output
    # and then the second officer's own client does it
    code, output = run("keys", "approve", approval_id, *second.args(), officer="TJ-SEC-0002")
    assert code == 0 and "executed" in output


def test_destruction_filed_at_the_command_line_is_approved_through_the_api_by_another_client_only(
    cli_env: Flask, first: Officer, second: Officer
) -> None:
    ring: KeyRing = cli_env.extensions["exchange.keystore"]
    assert run("keys", "generate", "audit")[0] == 0
    spare = [k.kid for k in ring.snapshot(refresh=True).keys if k.purpose == "audit" and k.activate_at is None]
    assert len(spare) == 1
    assert run("keys", "retire", spare[0])[0] == 0
    code, output = run("keys", "destroy", spare[0], *first.args())
    assert code == 0, output
    approval_id = _approval_id(output)

    def api(client_id: str, officer: str) -> TestResponse:
        caller = Caller(agency="security", client_id=client_id, officer=officer, scopes=AGENCY_SCOPES["security"],
                        purpose=min(PURPOSES["security"]))
        return cli_env.test_client().post(f"/v1/keys/approvals/{approval_id}", json={},
                                          environ_base={"exchange.test_caller": caller})

    same = api(first.client_id, "TJ-SEC-0002")
    assert same.status_code == 403 and same.get_json()["code"] == "dual_control_same_principal"
    assert ring.store.has(spare[0])
    done = api(second.client_id, "TJ-SEC-0002")
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["approval"]["decided_by_client"] == second.client_id
    assert not ring.store.has(spare[0])


def test_rotate_due_for_cron_and_refusals_exit_non_zero(cli_env: Flask, first: Officer) -> None:
    code, output = run("keys", "rotate", "--due")
    assert code == 0 and "no key is due" in output
    code, output = run("keys", "rotate", "--due", "--max-age", "token=0.000001")
    assert code == 0 and "token" in output and "pending" in output
    code, output = run("keys", "rotate", "--due", "--max-age", "bogus=1")
    assert code == 2 and "PURPOSE=DAYS" in output
    code, output = run("keys", "show", "no-such-key", officer=None)
    assert code == 1 and "key_not_found" in output
    # one kid in 64 starts with "-": it is a kid, not an unknown option
    for command in (["keys", "show"], ["keys", "activate"], ["keys", "retire"], ["keys", "revoke"],
                    ["keys", "destroy"]):
        dual = ["--reason", "x", *first.args()] if command[1] in ("revoke", "destroy") else []
        code, output = run(*command, "-Ab_c-9", *dual, officer=None if command[1] == "show" else "TJ-SEC-0001")
        assert code == 1 and "key_not_found" in output, (command, output)
    code, output = run("keys", "rotate", "token", officer=None)
    assert code == 2 and "--officer" in output
