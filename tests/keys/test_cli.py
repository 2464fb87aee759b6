"""`exchange keys ...`: a security officer's session at the server's command line, dual control included."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.audit.models import AuditEntry
from exchange.cli import main
from exchange.keys.ring import KeyRing, key_ring


def run(*args: str, officer: str | None = "TJ-SEC-0001") -> tuple[int, str]:
    extra = ["--officer", officer] if officer else []
    result = CliRunner().invoke(main, [*args, *extra], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def cli_env(file_app: Flask, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", database_url)
    monkeypatch.setenv("EXCHANGE_KEY_CACHE_SECONDS", "0")
    return file_app


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


def test_revocation_from_the_command_line_needs_a_second_officer(cli_env: Flask) -> None:
    ring: KeyRing = key_ring(cli_env)
    victim = ring.active("envelope-sign").kid
    code, output = run("keys", "revoke", victim, "--reason", "operator laptop stolen")
    assert code == 0 and "pending" in output
    approval_id = re.search(r"id ([0-9a-f-]{36})", output.replace("\n", ""))
    assert approval_id is not None
    code, output = run("keys", "approve", approval_id.group(1))  # the same officer
    assert code == 1 and "dual_control_same_officer" in output
    assert ring.snapshot(refresh=True).by_kid(victim).revoked_at is None  # type: ignore[union-attr]
    code, output = run("keys", "approve", approval_id.group(1), officer="TJ-SEC-0002")
    assert code == 0 and "executed" in output and "revoked" in output
    assert ring.snapshot(refresh=True).by_kid(victim).revoked_at is not None  # type: ignore[union-attr]
    assert ring.active("envelope-sign").kid != victim
    actions = [(e["action"], e["outcome"], e["officer"]) for e in entries(cli_env) if str(e["action"])
               .startswith("key.")]
    assert actions == [("key.revoke_request", "success", "TJ-SEC-0001"), ("key.approve", "failure", "TJ-SEC-0001"),
                       ("key.approve", "success", "TJ-SEC-0002")]


def test_rotate_due_for_cron_and_refusals_exit_non_zero(cli_env: Flask) -> None:
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
        code, output = run(*command, "-Ab_c-9", *(["--reason", "x"] if command[1] in ("revoke", "destroy") else []),
                           officer=None if command[1] == "show" else "TJ-SEC-0001")
        assert code == 1 and "key_not_found" in output, (command, output)
    code, output = run("keys", "rotate", "token", officer=None)
    assert code == 2 and "--officer" in output
