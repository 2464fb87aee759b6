"""`exchange keys ...`: security officers manage the exchange's keys from the server's command line.

Every command runs the same `KeyService` as `/v1/keys` and writes the same audit entry (`key.<operation>`, agency
`security`, your `--officer`) in the same transaction as the change: if the entry cannot be written, nothing changes.
Dual control: revoking or destroying a key files a request that a *different security client* approves within 15
minutes, through `POST /v1/keys/approvals/{id}` or `exchange keys approve`. At the command line each half is signed
with the officer's own security client key (`--client-id`, `--key-dir` holding its `auth.jwk.json`) and checked
against that client's registered key: access to this server and its database is not a second person.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from flask import current_app
from flask.cli import with_appcontext
from rich.console import Console
from rich.table import Table

from exchange.audit import recorder
from exchange.audit.services import new_request_id
from exchange.db import db
from exchange.keys.errors import PrincipalKeyInvalid
from exchange.keys.models import KeyApproval
from exchange.keys.principal import Principal, sign_statement, verify_statement
from exchange.keys.ring import KeyRing, PublishedKey, key_ring
from exchange.keys.service import DEFAULT_MAX_AGE_DAYS, KeyService, KeyView
from exchange.keys.store import ALL_PURPOSES
from exchange.operator import KID_FIRST_DASH, officer_caller, run_audited
from exchange.protocol import jose
from exchange.protocol.errors import ExchangeError

console = Console()
T = TypeVar("T")
OFFICER = click.option("--officer", envvar="EXCHANGE_OFFICER", required=True,
                       help="Your officer id (recorded with the operation); or set EXCHANGE_OFFICER.")
CLIENT_ID = click.option("--client-id", "client_id", envvar="EXCHANGE_SECURITY_CLIENT", required=True,
                         help="Your own security client (dual control); or set EXCHANGE_SECURITY_CLIENT.")
KEY_DIR = click.option("--key-dir", "key_dir", envvar="EXCHANGE_SECURITY_KEY_DIR", required=True,
                       type=click.Path(file_okay=False, path_type=Path),
                       help="The directory holding that client's private auth.jwk.json; or set "
                            "EXCHANGE_SECURITY_KEY_DIR.")
STATE_COLOURS = {"active": "green", "pending": "cyan", "retiring": "yellow", "retired": "dim", "revoked": "red",
                 "destroyed": "magenta"}


def _ring() -> KeyRing:
    ring: KeyRing = key_ring()
    return ring


def _service() -> KeyService:
    from datetime import timedelta

    return KeyService(session=db.session, ring=_ring(),
                      overlap=timedelta(seconds=current_app.config["KEY_OVERLAP_SECONDS"]))


def initialise_keys() -> list[PublishedKey]:
    """`exchange init`, once the master key is set up: make and register every missing exchange key (audited)."""
    ring = _ring()
    ring.store.unlock()
    created = ring.ensure_all()
    if created:
        caller = officer_caller(None, "key-management")
        for key in created:
            recorder.record_event(db.session, action="key.generate", outcome="success", status=201, caller=caller,
                                  request_id=new_request_id(), method="CLI", path="exchange init",
                                  record_ids=[key.kid])
        db.session.commit()
    return created


def _run(officer: str, command: str, operation: str, action: Callable[[KeyService], T],
         record_ids: Callable[[T], Iterable[str]], *, client_id: str = "cli") -> T:
    """Run `action` and its audit entry `key.<operation>` in one transaction (see exchange.operator)."""
    result = run_audited(officer=officer, command=command, action=f"key.{operation}", purpose="key-management",
                         work=lambda: action(_service()), record_ids=record_ids, client_id=client_id)
    _ring().invalidate()
    return result


def _prove(client_id: str, key_dir: Path, *, action: str, target: str) -> Principal:
    """Sign a statement of `action` on `target` with the client's private auth key and verify it against the key
    registered for that client: the principal of this half of dual control, or PrincipalKeyInvalid."""
    path = key_dir / "auth.jwk.json"
    try:
        key = jose.OKPKey.import_key(json.loads(path.read_text(encoding="ascii")))
        if not key.as_dict(private=True).get("d"):
            raise ValueError("a public key")
    except (OSError, ValueError, TypeError, jose.JoseError) as e:
        raise PrincipalKeyInvalid(f"{path} does not hold a private Ed25519 auth key (JWK).") from e
    statement = sign_statement(client_id=client_id, key=key, action=action, target=target)
    return verify_statement(db.session, statement, client_id=client_id, action=action, target=target)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def _state(view: KeyView) -> str:
    colour = STATE_COLOURS.get(view.state, "white")
    return f"[{colour}]{view.state}[/]"


def keys_table(views: Iterable[KeyView], *, title: str) -> Table:
    table = Table(title=title)
    for column in ("purpose", "kid", "state", "activates", "retires", "private part", "created by"):
        table.add_column(column, overflow="fold")
    for view in views:
        row = view.record
        private = "held" if view.private_part else ("erased" if row.destroyed_at else "missing")
        table.add_row(row.purpose, row.kid, _state(view), _when(row.activate_at), _when(row.retire_at), private,
                      row.created_by or "exchange init")
    return table


def _approval_line(approval: KeyApproval) -> str:
    decided = f"; approved by {approval.decided_by} as {approval.decided_by_client}" if approval.decided_by_client \
        else ""
    return (f"{approval.operation} of {approval.kid}: [bold]{approval.status}[/] (id {approval.id}; filed by "
            f"{approval.requested_by} as {approval.requested_by_client or '?'}{decided}, expires "
            f"{_when(approval.expires_at)})")


@click.group("keys")
def keys() -> None:
    """The exchange's keys: generate, list, show, activate, rotate, retire, revoke, approve, destroy, rewrap."""


@keys.command("list")
@click.option("--purpose", type=click.Choice(ALL_PURPOSES))
@click.option("--state", type=click.Choice(list(STATE_COLOURS)))
@with_appcontext
def list_command(purpose: str | None, state: str | None) -> None:
    """List the exchange's keys with their state now."""
    views = _service().list_keys(purpose=purpose, state=state)
    console.print(keys_table(views, title=f"{len(views)} exchange keys"))
    pending = _service().approvals(status="pending")
    for approval in pending:
        console.print("waiting for another security client: " + _approval_line(approval))
    db.session.commit()  # expired approvals marked as such


@keys.command("show", context_settings=KID_FIRST_DASH)
@click.argument("kid")
@with_appcontext
def show(kid: str) -> None:
    """Show one key."""
    try:
        view = _service().show(kid)
    except ExchangeError as e:
        console.print(f"[red]refused ({e.code}):[/] {e.message}")
        sys.exit(1)
    row = view.record
    table = Table(title=f"{row.purpose} key {row.kid}", show_header=False)
    for name, value in (("state", _state(view)), ("algorithm", row.algorithm), ("public key", row.x or "(secret)"),
                        ("created", _when(row.created_at)), ("created by", row.created_by or "exchange init"),
                        ("activates", _when(row.activate_at)), ("retires", _when(row.retire_at)),
                        ("revoked", f"{_when(row.revoked_at)} {row.revoked_reason or ''}".strip()),
                        ("destroyed", _when(row.destroyed_at)),
                        ("private part", "held" if view.private_part else "not held")):
        table.add_row(name, value)
    console.print(table)


@keys.command("generate")
@click.argument("purpose", type=click.Choice(ALL_PURPOSES))
@OFFICER
@with_appcontext
def generate(purpose: str, officer: str) -> None:
    """Make a pending key: published in the JWKS, not used until `activate`."""
    view = _run(officer, f"exchange keys generate {purpose}", "generate",
                lambda s: s.generate(purpose, officer=officer), lambda v: [v.record.kid])
    console.print(keys_table([view], title="generated"))


@keys.command("activate", context_settings=KID_FIRST_DASH)
@click.argument("kid")
@OFFICER
@with_appcontext
def activate(kid: str, officer: str) -> None:
    """Activate a pending key (in a few seconds, once every worker knows it); the current one starts retiring."""
    views = _run(officer, f"exchange keys activate {kid}", "activate", lambda s: s.activate(kid, officer=officer),
                 lambda vs: [v.record.kid for v in vs])
    console.print(keys_table(views, title="activation scheduled"))


def _max_ages(values: tuple[str, ...]) -> dict[str, float]:
    ages: dict[str, float] = {}
    for item in values:
        purpose, _, days = item.partition("=")
        if purpose not in ALL_PURPOSES or not days:
            raise click.BadParameter(f"{item!r}: use PURPOSE=DAYS, e.g. token=30", param_hint="--max-age")
        try:
            ages[purpose] = float(days)
        except ValueError as e:
            raise click.BadParameter(f"{item!r}: DAYS must be a number", param_hint="--max-age") from e
    return ages


@keys.command("rotate")
@click.argument("purpose", type=click.Choice(ALL_PURPOSES), required=False)
@click.option("--due", is_flag=True, help="Rotate every key older than its maximum age (for cron).")
@click.option("--max-age", "max_age", multiple=True, metavar="PURPOSE=DAYS",
              help="Override a maximum age for --due; defaults: "
                   + ", ".join(f"{p}={d}" for p, d in DEFAULT_MAX_AGE_DAYS.items()))
@OFFICER
@with_appcontext
def rotate(purpose: str | None, due: bool, max_age: tuple[str, ...], officer: str) -> None:
    """Generate and activate a new PURPOSE key; or, with --due, every key past its maximum age."""
    if due == (purpose is not None):
        raise click.UsageError("Name one PURPOSE, or pass --due.")
    if due:
        ages = _max_ages(max_age)
        views = _run(officer, "exchange keys rotate --due", "rotate",
                     lambda s: s.rotate_due(officer=officer, max_age_days=ages),
                     lambda vs: [v.record.kid for v in vs])
        if not views:
            console.print("no key is due for rotation")
            return
    elif purpose is not None:
        views = _run(officer, f"exchange keys rotate {purpose}", "rotate",
                     lambda s: s.rotate(purpose, officer=officer), lambda vs: [v.record.kid for v in vs])
    console.print(keys_table(views, title="rotated (the new key activates at the time shown)"))


@keys.command("retire", context_settings=KID_FIRST_DASH)
@click.argument("kid")
@OFFICER
@with_appcontext
def retire(kid: str, officer: str) -> None:
    """Stop trusting a pending or retiring key now (the active key cannot retire: rotate it)."""
    view = _run(officer, f"exchange keys retire {kid}", "retire", lambda s: s.retire(kid, officer=officer),
                lambda v: [v.record.kid])
    console.print(keys_table([view], title="retired"))


@keys.command("revoke", context_settings=KID_FIRST_DASH)
@click.argument("kid")
@click.option("--reason", required=True, help="Why (kept with the key, shown to auditors).")
@OFFICER
@CLIENT_ID
@KEY_DIR
@with_appcontext
def revoke(kid: str, reason: str, officer: str, client_id: str, key_dir: Path) -> None:
    """File the revocation of a key, signed with your security client's key; a different security client approves
    it within 15 minutes (`exchange keys approve`, or the API)."""
    approval = _run(officer, f"exchange keys revoke {kid}", "revoke_request",
                    lambda s: s.request_revocation(kid, reason=reason, officer=officer, principal=_prove(
                        client_id, key_dir, action="key.revoke_request", target=kid)),
                    lambda a: [a.kid], client_id=client_id)
    _filed(approval)


@keys.command("destroy", context_settings=KID_FIRST_DASH)
@click.argument("kid")
@click.option("--reason", default=None, help="Why (kept with the request).")
@OFFICER
@CLIENT_ID
@KEY_DIR
@with_appcontext
def destroy(kid: str, reason: str | None, officer: str, client_id: str, key_dir: Path) -> None:
    """File the destruction of a key's private part (its public part is kept), signed with your security client's
    key; a different security client approves it."""
    approval = _run(officer, f"exchange keys destroy {kid}", "destroy_request",
                    lambda s: s.request_destruction(kid, reason=reason, officer=officer, principal=_prove(
                        client_id, key_dir, action="key.destroy_request", target=kid)),
                    lambda a: [a.kid], client_id=client_id)
    _filed(approval)


def _filed(approval: KeyApproval) -> None:
    console.print("filed: " + _approval_line(approval))
    console.print("A second officer, with a DIFFERENT security client and its own key, approves it within 15 "
                  f"minutes:\n  [cyan]exchange keys approve {approval.id} --officer THEIR-ID --client-id "
                  "THEIR-CLIENT --key-dir THEIR-KEY-DIR[/]\n"
                  f"  or POST /v1/keys/approvals/{approval.id} from their own security client")


@keys.command("approve")
@click.argument("approval_id", type=click.UUID, required=False)
@click.option("--officer", envvar="EXCHANGE_OFFICER", help="Your officer id (recorded with the approval).")
@click.option("--client-id", "client_id", envvar="EXCHANGE_SECURITY_CLIENT",
              help="Your own security client: not the one that filed the request.")
@click.option("--key-dir", "key_dir", envvar="EXCHANGE_SECURITY_KEY_DIR",
              type=click.Path(file_okay=False, path_type=Path), help="The directory holding its auth.jwk.json.")
@with_appcontext
def approve(approval_id: uuid.UUID | None, officer: str | None, client_id: str | None,
            key_dir: Path | None) -> None:
    """Approve a request filed by another security client, signed with your own security client's key (without an
    id: list the open requests)."""
    if approval_id is None:
        pending = _service().approvals(status="pending")
        db.session.commit()
        if not pending:
            console.print("no request is waiting for approval")
        for item in pending:
            console.print(_approval_line(item))
        return
    if not officer or not client_id or key_dir is None:
        missing = [name for name, value in (("--officer", officer), ("--client-id", client_id),
                                            ("--key-dir", key_dir)) if not value]
        raise click.UsageError(f"Approving needs {', '.join(missing)}: your officer id, and your own security "
                               "client with its key.")
    outcome = _run(officer, f"exchange keys approve {approval_id}", "approve",
                   lambda s: s.approve(approval_id, officer=officer, principal=_prove(
                       client_id, key_dir, action="key.approve", target=str(approval_id))),
                   lambda o: [v.record.kid for v in o.keys], client_id=client_id)
    if outcome.approval is not None:
        console.print("executed: " + _approval_line(outcome.approval))
    console.print(keys_table(outcome.keys, title="keys changed"))


@keys.command("rewrap")
@OFFICER
@with_appcontext
def rewrap(officer: str) -> None:
    """Re-seal every key file and every evidence row under the active storage key."""
    result: Any = _run(officer, "exchange keys rewrap", "rewrap", lambda s: s.rewrap(officer=officer),
                       lambda r: [r.storage_kid])
    console.print(f"rewrapped under storage key {result.storage_kid}: {result.key_files} key file(s), "
                  f"{result.evidence_rows} evidence row(s)")
