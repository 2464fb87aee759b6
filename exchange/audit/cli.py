"""`exchange audit ...`: verify the log offline, read it, publish checkpoints.

Reading the log from the command line (`tail`, `search`, `export`, `verify --database`) is itself recorded, as
`audit.read` by the agency `exchange` with the operator's `--officer`, before anything is shown: if the entry
cannot be written, nothing is read.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import ScriptInfo, with_appcontext
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from exchange.audit import recorder
from exchange.audit.services import AuditLog, SearchFilters, StoredEntry, export_lines, new_request_id
from exchange.audit.verify import (
    DEFAULT_STATE,
    DatabaseSource,
    ExportSource,
    KeptReceipt,
    LogSource,
    TrustState,
    verify_log,
)
from exchange.db import db, missing_sqlite_file
from exchange.identity import Caller
from exchange.protocol.audit_errors import AuditUnavailable, InvalidCheckpoint, LogMismatch, VerificationError
from exchange.protocol.checkpoint import NoteVerifier
from exchange.protocol.cosignature import WitnessPolicy
from exchange.protocol.receipts import read_receipts

console = Console()
errors = Console(stderr=True)
OFFICER = click.option("--officer", envvar="EXCHANGE_OFFICER", default=None,
                       help="Your officer id, recorded with the read; or set EXCHANGE_OFFICER.")


def _app() -> Flask:
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return app


def _record_read(officer: str | None, command: str, *, required: bool = True) -> None:
    """Audit this read of the log before it happens: refuse to read if that fails, unless not `required`."""
    missing = missing_sqlite_file(_app().config["DATABASE_URL"])
    if missing is not None:
        raise click.UsageError(f"no database at {missing}: check EXCHANGE_DATABASE_URL, or create one with "
                               "`exchange init` (or verify an export: --export FILE)")
    caller = Caller(agency="exchange", client_id="cli", officer=officer, purpose="oversight")
    try:
        recorder.record_event(db.session, action="audit.read", outcome="success", status=200, caller=caller,
                              request_id=new_request_id(), method="CLI", path=command)
        db.session.commit()
    except AuditUnavailable as e:
        db.session.rollback()
        if required:
            errors.print(f"[red]refused ({e.code}):[/] {e.message}")
            sys.exit(1)
        errors.print("[yellow]this read could not be recorded: the log cannot be appended to[/]")


def _entries_table(title: str, entries: Sequence[StoredEntry]) -> Table:
    table = Table(title=title)
    for column in ("index", "time (UTC)", "action", "outcome", "agency", "client", "officer", "purpose", "call",
                   "records"):
        table.add_column(column, overflow="fold")
    for stored in entries:
        entry: dict[str, Any] = json.loads(stored.leaf)
        outcome = "ok" if entry["outcome"] == "success" else f"[red]{entry['status']} {entry['reason']}[/]"
        records = entry["record_ids"]
        table.add_row(
            str(entry["index"]), entry["time"].replace("T", " ")[:23], entry["action"], outcome,
            entry["agency"] or "-", entry["client_id"] or "-", entry["officer"] or "-", entry["purpose"] or "-",
            f"{entry['method']} {entry['path']}", f"{len(records)}: {records[0][:8]}…" if records else "-",
        )
    return table


@click.group("audit")
def audit() -> None:
    """The tamper-evident audit log: verify it, read it, publish checkpoints."""


@audit.command("verify")
@click.option("--export", "export_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Verify an export file (exchange audit export, GET /v1/audit/export).")
@click.option("--database", is_flag=True, help="Verify the configured exchange's database (the default).")
@click.option("--server", metavar="URL", help="Verify a running exchange's log through its API, as an auditor client "
                                              "(--client-id, --client-keys).")
@click.option("--client-id", envvar="EXCHANGE_CLIENT_ID", help="With --server: your auditor client id "
                                                               "(or EXCHANGE_CLIENT_ID).")
@click.option("--client-keys", type=click.Path(file_okay=False, path_type=Path), envvar="EXCHANGE_CLIENT_KEYS",
              help="With --server: the folder of your client's auth/sign/enc keys (or EXCHANGE_CLIENT_KEYS).")
@click.option("--state", "state_file", type=click.Path(dir_okay=False, path_type=Path), default=str(DEFAULT_STATE),
              show_default=True, help="Trust-on-first-use state: the last verified checkpoint.")
@click.option("--key", "keys", multiple=True, metavar="VKEY",
              help="Trusted checkpoint key as a C2SP verifier key (exchange audit key prints it). Repeatable.")
@click.option("--strict", is_flag=True, help="Also check each entry is canonical RFC 8785 with the audit.md members.")
@click.option("--witness", "witness_keys", multiple=True, metavar="VKEY", envvar="EXCHANGE_VERIFY_WITNESSES",
              help="A witness key you trust (type 0x04 verifier key; `exchange witness status` prints it). Repeatable "
                   "(or EXCHANGE_VERIFY_WITNESSES, space-separated).")
@click.option("--quorum", type=click.IntRange(min=0), envvar="EXCHANGE_VERIFY_QUORUM",
              help="Refuse a checkpoint without this many valid cosignatures from --witness keys (default: all of "
                   "them; or EXCHANGE_VERIFY_QUORUM).")
@click.option("--receipts", "receipts_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Also check the receipts kept in this folder (*.receipt.json, as the client library keeps them) "
                   "against the log, naming any the log contradicts.")
@OFFICER
def verify_command(export_file: Path | None, database: bool, server: str | None, client_id: str | None,
                   client_keys: Path | None, state_file: Path, keys: tuple[str, ...], strict: bool,
                   witness_keys: tuple[str, ...], quorum: int | None, receipts_dir: Path | None,
                   officer: str | None) -> None:
    """Verify the whole log: checkpoint signature, every entry, the root, and consistency with the last run.

    Reads the configured database (default), an export file (--export) or a running exchange (--server).
    Exits 0 when the log verifies, 1 naming the first bad index when it does not, 2 when it cannot start.
    """
    if sum((export_file is not None, database, server is not None)) > 1:
        raise click.UsageError("give one of --export, --database, --server")
    state_path = state_file.expanduser()
    try:
        state = TrustState.load(state_path)
        verifiers = [NoteVerifier.from_vkey(k) for k in keys]
        policy = WitnessPolicy.parse([k for item in witness_keys for k in item.split()], quorum) if (
            witness_keys or quorum) else None
        kept = ([KeptReceipt(name=path.name, receipt=r) for path, r in read_receipts(receipts_dir)]
                if receipts_dir is not None else [])
    except (VerificationError, ValueError) as e:
        raise click.UsageError(str(e)) from e
    checks = Checks(witnesses=policy, receipts=kept)
    if not verifiers and state is not None:
        verifiers = [NoteVerifier.from_vkey(state.key)]
    if server is not None:
        _verify_server(server, client_id, client_keys, officer, verifiers, state, state_path, strict, checks)
        return
    if export_file is not None:
        if not verifiers:
            raise click.UsageError("no trusted key: pass --key (the exchange's operators print it with "
                                   "`exchange audit key`); it is remembered in the state file")
        try:
            source: LogSource = ExportSource(export_file)
        except VerificationError as e:
            raise click.UsageError(str(e)) from e
        _verify(source, verifiers, state, state_path, strict, checks=checks)
        return
    app = click.get_current_context().ensure_object(ScriptInfo).load_app()
    with app.app_context():
        # The verifier is how one finds out why the log cannot be appended to (a tampered head or table makes
        # every append fail): it runs even when its own read cannot be recorded, and says so.
        _record_read(officer, "exchange audit verify", required=False)
        origin = recorder.origin(app)
        queued = AuditLog(session=db.session).queued()
        _verify(DatabaseSource(db.session, description=f"database {db.engine(app).url.render_as_string()}",
                               cosignatures=policy.quorum if policy is not None else 0),
                verifiers or recorder.verifiers(app), state, state_path, strict, origin=origin, checks=checks)
        if queued:
            console.print(f"  {queued} entries are queued, not sequenced yet: `exchange audit checkpoint` sequences "
                          "them (they are not in the tree until then)", soft_wrap=True, highlight=False)


def _verify_server(server: str, client_id: str | None, client_keys: Path | None, officer: str | None,
                   verifiers: list[NoteVerifier], state: TrustState | None, state_path: Path, strict: bool,
                   checks: Checks) -> None:
    from exchange.audit.remote import ServerSource
    from exchange.partner.api import ExchangeClient
    from exchange.partner.errors import ExchangeClientError

    if not client_id or client_keys is None:
        raise click.UsageError("--server needs your auditor client: --client-id and --client-keys")
    try:
        client = ExchangeClient.from_files(server, client_id, "auditor", client_keys.expanduser(),
                                           purpose="oversight", officer=officer)
    except (OSError, ValueError) as e:
        raise click.UsageError(f"cannot load the client keys from {client_keys}: {e}") from e
    with client:
        try:
            source = ServerSource(client)
            note = source.checkpoint()
            origin = state.origin if state else note.split("\n", 1)[0]
            if not verifiers:
                # Trust on first use: the audit keys the exchange publishes in its JWKS; remembered in the state
                # file, so a later run notices a log signed by another key.
                verifiers = [NoteVerifier(name=origin, public_key=raw)
                             for raw in client._connection.published_keys().audit]
                if not verifiers:
                    raise click.UsageError("the exchange publishes no audit key; pass --key")
                errors.print(f"[yellow]first use: trusting the audit key(s) the exchange publishes[/] "
                             f"({', '.join(v.vkey for v in verifiers)})", soft_wrap=True, highlight=False)
            _verify(source, verifiers, state, state_path, strict, origin=origin, checks=checks)
        except ExchangeClientError as e:
            console.print(f"[red]FAILED[/] server {server}: {e}", soft_wrap=True, highlight=False)
            sys.exit(1)


@dataclass(frozen=True, kw_only=True)
class Checks:
    """What the verifier checks besides the log itself: its own witness quorum and the receipts it was given."""

    witnesses: WitnessPolicy | None = None
    receipts: list[KeptReceipt] = field(default_factory=list)


def _verify(source: LogSource, verifiers: list[NoteVerifier], state: TrustState | None, state_path: Path,
            strict: bool, *, origin: str | None = None, checks: Checks | None = None) -> None:
    checks = checks or Checks()
    origin = origin or (state.origin if state else verifiers[0].name)
    with Progress(TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=errors, transient=True) as bar:
        task = bar.add_task("entries", total=None)
        try:
            verified = verify_log(source, verifiers=verifiers, origin=origin, state=state, strict=strict,
                                  witnesses=checks.witnesses, receipts=checks.receipts,
                                  progress=lambda done, total: bar.update(task, completed=done, total=total))
        except LogMismatch as e:
            bar.stop()
            console.print(f"[red]FAILED[/] {source.description}: first bad index {e.index}"
                          + (f" (somewhere in {e.index}..{e.last})" if e.last != e.index else "")
                          + f": {e.reason}", soft_wrap=True, highlight=False)
            sys.exit(1)
        except (InvalidCheckpoint, VerificationError) as e:
            bar.stop()
            console.print(f"[red]FAILED[/] {source.description}: {e}", soft_wrap=True, highlight=False)
            sys.exit(1)
    checkpoint = verified.checkpoint
    key = next(v for v in verifiers if v.name == checkpoint.checkpoint.origin)
    lines = [f"[green]verified[/] {checkpoint.size} entries of {checkpoint.checkpoint.origin} ({source.description})",
             f"  root   {checkpoint.checkpoint.text().splitlines()[2]}",
             f"  key    {key.vkey}"]
    if checks.witnesses is not None:
        lines.append(f"  witnessed by {len(verified.cosignatures)} trusted witness(es) "
                     f"({', '.join(c.name for c in verified.cosignatures) or 'none'}; "
                     f"quorum {checks.witnesses.quorum})")
    if checks.receipts:
        lines.append(f"  {verified.receipts_checked} kept receipt(s) match the log"
                     + (f"; {verified.receipts_pending} are past the checkpoint (check them next time)"
                        if verified.receipts_pending else ""))
    if verified.previous is None:
        lines.append(f"  first use: trusting this checkpoint and key from now on ({state_path})")
    else:
        lines.append(f"  consistent with the {verified.previous.size} entries verified on "
                     f"{verified.previous.verified_at}")
    if verified.uncovered:
        lines.append(f"  {verified.uncovered} newer entries are not in a checkpoint yet (exchange audit checkpoint)")
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)
    verified.state(key).save(state_path)


@audit.command("tail")
@click.option("-n", "--lines", "count", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--follow", "-f", is_flag=True, help="Keep printing new entries (Ctrl-C to stop).")
@OFFICER
@with_appcontext
def tail_command(count: int, follow: bool, officer: str | None) -> None:
    """Show the newest entries."""
    _record_read(officer, "exchange audit tail")
    log = AuditLog(session=db.session)
    entries = log.last(count)
    console.print(_entries_table(f"last {len(entries)} of {log.size()} entries", entries))
    after = entries[-1].index + 1 if entries else 0
    while follow:
        time.sleep(1)
        db.session.rollback()  # a fresh snapshot
        new = log.entries(after, min(log.size(), after + 1000)) if log.size() > after else []
        if new:
            console.print(_entries_table("", new))
            after = new[-1].index + 1


@audit.command("search")
@click.option("--agency")
@click.option("--client-id")
@click.option("--action")
@click.option("--outcome", type=click.Choice(["success", "failure"]))
@click.option("--purpose")
@click.option("--record-id")
@click.option("--from", "time_from", type=click.DateTime(), help="UTC, at or after.")
@click.option("--to", "time_to", type=click.DateTime(), help="UTC, before.")
@click.option("--after", type=int, help="Only entries after this index.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
@OFFICER
@with_appcontext
def search_command(agency: str | None, client_id: str | None, action: str | None, outcome: str | None,
                   purpose: str | None, record_id: str | None, time_from: datetime | None,
                   time_to: datetime | None, after: int | None, limit: int, officer: str | None) -> None:
    """Find entries by agency, client, action, outcome, purpose, record id and time."""
    _record_read(officer, "exchange audit search")
    filters = SearchFilters(agency=agency, client_id=client_id, action=action, outcome=outcome, purpose=purpose,
                            record_id=record_id,
                            time_from=time_from.replace(tzinfo=UTC) if time_from else None,
                            time_to=time_to.replace(tzinfo=UTC) if time_to else None)
    entries = AuditLog(session=db.session).search(filters, after=after, limit=limit)
    console.print(_entries_table(f"{len(entries)} matching entries" + (" (more: --after "
                                 f"{entries[-1].index})" if len(entries) == limit else ""), entries))


@audit.command("export")
@click.option("--start", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--end", type=click.IntRange(min=0), help="Default: the size of the latest checkpoint.")
@click.option("--output", "-o", type=click.File("w", encoding="utf-8", lazy=False), default="-", show_default=True,
              help="A file is created (or narrowed to) mode 0600: entries name records and agencies.")
@OFFICER
@with_appcontext
def export_command(start: int, end: int | None, output: Any, officer: str | None) -> None:
    """Write entries as JSON Lines with a checkpoint covering them (signing a new one if the log grew)."""
    if getattr(output, "name", "-") not in ("-", "<stdout>") and os.path.isfile(output.name):
        os.fchmod(output.fileno(), 0o600)  # before the first entry is written
    _record_read(officer, "exchange audit export")
    app = _app()
    log = AuditLog(session=db.session)
    checkpoint = log.checkpoint(signer=recorder.signer(app), origin=recorder.origin(app))
    db.session.commit()
    end = checkpoint.size if end is None else end
    if not start <= end <= checkpoint.size:
        raise click.UsageError(f"the latest checkpoint covers 0..{checkpoint.size}; choose start <= end within it")
    for line in export_lines(log, note=checkpoint.note, start=start, end=end):
        output.write(line)
    errors.print(f"exported entries {start}..{end - 1} with the checkpoint at size {checkpoint.size}")


@audit.command("checkpoint")
@click.option("--every", type=click.FloatRange(min=0), is_flag=False, flag_value=0.0, default=None,
              metavar="[SECONDS]", help="Keep publishing every SECONDS (alone: AUDIT_CHECKPOINT_SECONDS) until "
                                        "interrupted.")
@with_appcontext
def checkpoint_command(every: float | None) -> None:
    """Sequence any entries still queued, sign and publish a checkpoint if the log grew since the last one, and print
    it (from cron, or --every). Entries are queued with their call and sequenced right after its commit; one whose
    worker died in between is sequenced here at the latest."""
    app = _app()
    interval = (every or float(app.config.get("AUDIT_CHECKPOINT_SECONDS", 10))) if every is not None else None
    try:
        while True:
            row = AuditLog(session=db.session).checkpoint(signer=recorder.signer(app), origin=recorder.origin(app))
            db.session.commit()
            click.echo(row.note, nl=False)
            if interval is None:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        errors.print("stopped")


@audit.command("key")
@with_appcontext
def key_command() -> None:
    """Print the checkpoint keys as C2SP verifier keys, for `exchange audit verify --key` and for witnesses."""
    app = _app()
    recorder.signer(app)
    for verifier in recorder.verifiers(app):
        click.echo(verifier.vkey)
