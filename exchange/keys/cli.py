"""`exchange keys ...`: security officers manage the exchange's keys from the server's command line.

Every command runs the same `KeyService` as `/v1/keys` and writes the same audit entry (`key.<operation>`, agency
`security`, your `--officer`) in the same transaction as the change: if the entry cannot be written, nothing changes.
Revoking or destroying a key files a request that a second officer approves with `exchange keys approve`.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

import click
from flask import current_app
from flask.cli import with_appcontext
from rich.console import Console
from rich.table import Table

from exchange.audit import recorder
from exchange.audit.services import new_request_id
from exchange.db import db
from exchange.keys.models import KeyApproval
from exchange.keys.ring import KeyRing, PublishedKey, key_ring
from exchange.keys.service import DEFAULT_MAX_AGE_DAYS, KeyService, KeyView
from exchange.keys.store import ALL_PURPOSES
from exchange.operator import KID_FIRST_DASH, officer_caller, run_audited
from exchange.protocol.errors import ExchangeError

console = Console()
T = TypeVar("T")
OFFICER = click.option("--officer", envvar="EXCHANGE_OFFICER", required=True,
                       help="Your officer id (recorded with the operation); or set EXCHANGE_OFFICER.")
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
         record_ids: Callable[[T], Iterable[str]]) -> T:
    """Run `action` and its audit entry `key.<operation>` in one transaction (see exchange.operator)."""
    result = run_audited(officer=officer, command=command, action=f"key.{operation}", purpose="key-management",
                         work=lambda: action(_service()), record_ids=record_ids)
    _ring().invalidate()
    return result


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
    return (f"{approval.operation} of {approval.kid}: [bold]{approval.status}[/] (id {approval.id}; filed by "
            f"{approval.requested_by}, expires {_when(approval.expires_at)})")


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
        console.print("waiting for a second officer: " + _approval_line(approval))
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
@with_appcontext
def revoke(kid: str, reason: str, officer: str) -> None:
    """File the revocation of a key; a second officer approves it within 15 minutes (`exchange keys approve`)."""
    approval = _run(officer, f"exchange keys revoke {kid}", "revoke_request",
                    lambda s: s.request_revocation(kid, reason=reason, officer=officer), lambda a: [a.kid])
    console.print("filed: " + _approval_line(approval))
    console.print(f"A second officer runs: [cyan]exchange keys approve {approval.id}[/]")


@keys.command("destroy", context_settings=KID_FIRST_DASH)
@click.argument("kid")
@click.option("--reason", default=None, help="Why (kept with the request).")
@OFFICER
@with_appcontext
def destroy(kid: str, reason: str | None, officer: str) -> None:
    """File the destruction of a key's private part (its public part is kept); a second officer approves it."""
    approval = _run(officer, f"exchange keys destroy {kid}", "destroy_request",
                    lambda s: s.request_destruction(kid, reason=reason, officer=officer), lambda a: [a.kid])
    console.print("filed: " + _approval_line(approval))
    console.print(f"A second officer runs: [cyan]exchange keys approve {approval.id}[/]")


@keys.command("approve")
@click.argument("approval_id", type=click.UUID, required=False)
@OFFICER
@with_appcontext
def approve(approval_id: uuid.UUID | None, officer: str) -> None:
    """Approve another officer's revocation or destruction request (without an id: list the open requests)."""
    if approval_id is None:
        pending = _service().approvals(status="pending")
        db.session.commit()
        if not pending:
            console.print("no request is waiting for approval")
        for item in pending:
            console.print(_approval_line(item))
        return
    outcome = _run(officer, f"exchange keys approve {approval_id}", "approve",
                   lambda s: s.approve(approval_id, officer=officer), lambda o: [v.record.kid for v in o.keys])
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
