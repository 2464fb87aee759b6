"""`exchange witness init|serve|status`: run a witness of the exchange's audit log on your own host."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from exchange.protocol.audit_errors import InvalidCheckpoint
from exchange.protocol.checkpoint import NoteVerifier
from exchange.witness.services import STATE_FILE, Witness, init_folder, load_identity
from exchange.witness.state import WitnessState

FOLDER = click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), required=True,
                      envvar="EXCHANGE_WITNESS_DIR", help="The witness's folder: key, name, state (or "
                                                          "EXCHANGE_WITNESS_DIR).")


@click.group("witness")
def witness() -> None:
    """A witness of the audit log (C2SP tlog-witness): cosigns checkpoints consistent with the last it cosigned."""


@witness.command("init")
@FOLDER
@click.option("--name", required=True, help="The witness's key name, e.g. witness.border.example/w1.")
@click.option("--log", "logs", multiple=True, metavar="VKEY",
              help="A log to witness, by its checkpoint verifier key (`exchange audit key` prints it). Repeatable.")
def init_command(folder: Path, name: str, logs: tuple[str, ...]) -> None:
    """Make a witness: a new Ed25519 key and an empty state in --dir; prints its verifier key."""
    try:
        verifiers = [NoteVerifier.from_vkey(v) for v in logs]
    except InvalidCheckpoint as e:
        raise click.UsageError(f"--log: {e}") from e
    try:
        identity = init_folder(folder.expanduser(), name=name)
    except (FileExistsError, ValueError) as e:
        raise click.UsageError(str(e)) from e
    state = WitnessState(folder.expanduser() / STATE_FILE)
    for verifier, vkey in zip(verifiers, logs, strict=True):
        state.add_log(origin=verifier.name, vkey=vkey)
    click.echo(identity.public.vkey)


@witness.command("add-log")
@FOLDER
@click.option("--log", "vkey", required=True, metavar="VKEY", help="The log's checkpoint verifier key.")
def add_log_command(folder: Path, vkey: str) -> None:
    """Witness another log, or trust a log's new key after a rotation (what was cosigned for it is kept)."""
    try:
        verifier = NoteVerifier.from_vkey(vkey)
        load_identity(folder.expanduser())
    except (InvalidCheckpoint, FileNotFoundError) as e:
        raise click.UsageError(str(e)) from e
    WitnessState(folder.expanduser() / STATE_FILE).add_log(origin=verifier.name, vkey=vkey)
    click.echo(f"witnessing {verifier.name} with {vkey}")


@witness.command("serve")
@FOLDER
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=7380, show_default=True, type=click.IntRange(0, 65535))
def serve_command(folder: Path, host: str, port: int) -> None:
    """Answer POST /add-checkpoint until stopped."""
    from werkzeug.serving import make_server

    from exchange.witness.http import make_wsgi_app

    try:
        witness_ = Witness.open(folder.expanduser())
    except FileNotFoundError as e:
        raise click.UsageError(str(e)) from e
    server = make_server(host, port, make_wsgi_app(witness_), threaded=True)
    click.echo(f"witness {witness_.identity.name} on http://{host}:{server.server_port} "
               f"({witness_.identity.public.vkey})", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


@witness.command("status")
@FOLDER
def status_command(folder: Path) -> None:
    """The witness's key, each log's latest cosigned size, and the evidence kept."""
    try:
        identity = load_identity(folder.expanduser())
    except FileNotFoundError as e:
        raise click.UsageError(str(e)) from e
    state = WitnessState(folder.expanduser() / STATE_FILE)
    click.echo(f"witness {identity.name}")
    click.echo(f"  vkey {identity.public.vkey}")
    for log in state.logs():
        when = (datetime.fromtimestamp(log.updated_at, UTC).isoformat(timespec="seconds")
                if log.updated_at else "never")
        click.echo(f"  log {log.origin}: cosigned size {log.size} (at {when})")
    evidence = state.evidence()
    click.echo(f"  evidence kept: {len(evidence)} refused checkpoint(s)")
    for item in evidence:
        click.echo(f"    #{item.id} {item.origin}: {item.reason} (witness had {item.witnessed_size})")
