"""`exchange clients ...`: security officers register and manage agency clients from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from flask.cli import with_appcontext
from marshmallow import ValidationError
from rich.console import Console
from rich.table import Table

from exchange.clients.models import Client
from exchange.clients.schemas import ClientCreateSchema, ClientKeyInputSchema
from exchange.clients.services import ClientService
from exchange.db import db
from exchange.operator import KID_FIRST_DASH, run_audited
from exchange.protocol.errors import ExchangeError
from exchange.protocol.policy import AGENCY_SCOPES

console = Console()
OFFICER = click.option("--officer", envvar="EXCHANGE_OFFICER", required=True,
                       help="Your officer id (logged with the change); or set EXCHANGE_OFFICER.")


def _service() -> ClientService:
    return ClientService(session=db.session)


def _fail(error: ExchangeError | ValidationError) -> None:
    if isinstance(error, ValidationError):
        console.print(f"[red]refused:[/] {json.dumps(error.messages, ensure_ascii=False)}")
    else:
        console.print(f"[red]refused ({error.code}):[/] {error.message}")
        if error.errors:
            console.print(json.dumps(error.errors, ensure_ascii=False))
    sys.exit(1)


def _public_jwk(path: Path) -> dict[str, Any]:
    """A key file may hold a public or a private JWK; only the public members are ever used."""
    data = json.loads(path.read_text(encoding="ascii"))
    return {"kty": data.get("kty"), "crv": data.get("crv"), "x": data.get("x")}


def _show(client: Client) -> None:
    table = Table(title=f"{client.client_id} ({client.agency})", show_header=False)
    table.add_row("name", client.name)
    table.add_row("status", client.status + (f" — {client.status_reason}" if client.status_reason else ""))
    table.add_row("scopes", " ".join(client.scopes))
    table.add_row("version", str(client.version))
    for key in client.keys:
        table.add_row(f"{key.purpose} key", f"{key.kid} [{key.crv}] {key.status}")
    console.print(table)


@click.group("clients")
def clients() -> None:
    """Agency clients: register, list, show, suspend, resume; generate a partner's key files."""


@clients.command("keygen")
@click.option("--out", "directory", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the new key files (created, mode 0700).")
def keygen(directory: Path) -> None:
    """Generate a partner's three keys as private JWK files of mode 0600: auth and sign (Ed25519), enc (X25519).

    The partner keeps the private files (the client library reads all three from the folder); `exchange clients
    add` reads only their public part. Never overwrites a key.
    """
    from exchange.partner.envelopes import PartnerKeys

    keys = PartnerKeys.generate()
    try:
        keys.save(directory)
    except FileExistsError as e:
        console.print(f"[red]{e}[/]")
        sys.exit(1)
    for purpose, key in (("auth", keys.auth), ("sign", keys.sign), ("enc", keys.enc)):
        console.print(f"{purpose}: {directory / PartnerKeys.FILES[purpose]} (kid {key.kid})", soft_wrap=True)
    console.print(f"Register them: exchange clients add --client-id ID --agency AGENCY --name NAME --key-dir "
                  f"{directory}", soft_wrap=True, highlight=False)


@clients.command("add")
@click.option("--client-id", required=True)
@click.option("--agency", required=True, type=click.Choice(sorted(AGENCY_SCOPES)))
@click.option("--name", required=True, help="Who runs this client, e.g. 'Border post Panji Poyon'.")
@click.option("--scope", "scopes", multiple=True, help="Repeat; default: every scope of the agency.")
@click.option("--key-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The folder `exchange clients keygen` wrote: its auth, sign and enc keys (public parts only).")
@click.option("--auth-key", type=click.Path(dir_okay=False, path_type=Path),
              help="JWK file of the client's Ed25519 auth key (only its public part is read); instead of --key-dir.")
@click.option("--sign-key", type=click.Path(dir_okay=False, path_type=Path), help="Its Ed25519 sign key.")
@click.option("--enc-key", type=click.Path(dir_okay=False, path_type=Path), help="Its X25519 enc key.")
@OFFICER
@with_appcontext
def add(client_id: str, agency: str, name: str, scopes: tuple[str, ...], key_dir: Path | None, auth_key: Path | None,
        sign_key: Path | None, enc_key: Path | None, officer: str) -> None:
    """Register an agency client with its scopes and its three public keys (auth, sign, enc).

    Every client needs all three: auth for its tokens, sign for its requests, enc for the exchange's answers.
    """
    files = {"auth": auth_key, "sign": sign_key, "enc": enc_key}
    for purpose, given in files.items():
        if given is None and key_dir is not None:
            files[purpose] = key_dir / f"{purpose}.jwk.json"
    for purpose, file in files.items():
        if file is None:
            raise click.UsageError(f"no {purpose} key: pass --key-dir (the folder `exchange clients keygen --out DIR` "
                                   f"wrote) or --{purpose}-key FILE")
        if not file.is_file():
            raise click.UsageError(f"no {purpose} key file {file}: make the client's keys with `exchange clients "
                                   f"keygen --out {file.parent}`")
    keys = [{"purpose": p, "jwk": _public_jwk(f)} for p, f in files.items() if f is not None]
    body = {"client_id": client_id, "agency": agency, "name": name,
            "scopes": list(scopes) or sorted(AGENCY_SCOPES[agency]), "keys": keys}
    try:
        data = ClientCreateSchema().load(body)
    except ValidationError as e:
        _fail(e)
        return
    client = run_audited(officer=officer, command=f"exchange clients add {client_id}", action="client.register",
                         purpose="key-management", work=lambda: _service().register(data, officer=officer),
                         record_ids=lambda c: [c.client_id])
    _show(client)


@clients.command("add-key")
@click.argument("client_id")
@click.option("--purpose", required=True, type=click.Choice(["auth", "sign", "enc"]))
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="JWK file of the new key (only its public part is read).")
@OFFICER
@with_appcontext
def add_key(client_id: str, purpose: str, key_file: Path, officer: str) -> None:
    """Register a new key for a client: active at once; its previous key of PURPOSE retires after ~11 minutes."""
    try:
        data = ClientKeyInputSchema().load({"purpose": purpose, "jwk": _public_jwk(key_file)})
    except ValidationError as e:
        _fail(e)
        return
    key = run_audited(officer=officer, command=f"exchange clients add-key {client_id}", action="client.key_add",
                      purpose="key-management", work=lambda: _service().add_key(client_id, purpose, data["jwk"]),
                      record_ids=lambda k: [k.kid])
    console.print(f"{client_id}: {purpose} key {key.kid} [bold]active[/]")


@clients.command("revoke-key", context_settings=KID_FIRST_DASH)
@click.argument("client_id")
@click.argument("kid")
@click.option("--reason", required=True, help="Why (kept with the key).")
@OFFICER
@with_appcontext
def revoke_key(client_id: str, kid: str, reason: str, officer: str) -> None:
    """Revoke one of a client's keys: every request signed or authenticated with it fails from now on."""
    key = run_audited(officer=officer, command=f"exchange clients revoke-key {client_id} {kid}",
                      action="client.key_revoke", purpose="key-management",
                      work=lambda: _service().revoke_key(client_id, kid, reason=reason), record_ids=lambda k: [k.kid])
    console.print(f"{client_id}: {key.purpose} key {key.kid} [bold red]revoked[/] ({reason})")


@clients.command("list")
@click.option("--agency", type=click.Choice(sorted(AGENCY_SCOPES)))
@click.option("--status", type=click.Choice(["active", "suspended"]))
@with_appcontext
def list_command(agency: str | None, status: str | None) -> None:
    """List agency clients."""
    items, total = _service().list_clients({"agency": agency, "status": status}, page=1, page_size=1000)
    table = Table(title=f"{total} clients")
    for column in ("client_id", "agency", "status", "scopes", "keys"):
        table.add_column(column)
    for client in items:
        active = sum(1 for k in client.keys if k.status == "active")
        table.add_row(client.client_id, client.agency, client.status, " ".join(client.scopes), f"{active} active")
    console.print(table)


@clients.command("show")
@click.argument("client_id")
@with_appcontext
def show(client_id: str) -> None:
    """Show one client, its scopes and keys."""
    try:
        _show(_service().get(client_id))
    except ExchangeError as e:
        _fail(e)


def _set_status(client_id: str, status: str, reason: str | None, officer: str, *, verb: str) -> None:
    changes = {"status": status, **({"status_reason": reason} if reason else {})}
    client = run_audited(officer=officer, command=f"exchange clients {verb} {client_id}", action=f"client.{verb}",
                         purpose="key-management",
                         work=lambda: _service().update(client_id, changes, if_match=None, officer=officer),
                         record_ids=lambda c: [c.client_id])
    console.print(f"{client.client_id}: [bold]{client.status}[/]")


@clients.command("suspend")
@click.argument("client_id")
@click.option("--reason", required=True, help="Why: kept with the client and shown to other officers.")
@OFFICER
@with_appcontext
def suspend(client_id: str, reason: str, officer: str) -> None:
    """Suspend a client: its tokens stop working at once and it gets no new ones."""
    _set_status(client_id, "suspended", reason, officer, verb="suspend")


@clients.command("resume")
@click.argument("client_id")
@OFFICER
@with_appcontext
def resume(client_id: str, officer: str) -> None:
    """Resume a suspended client."""
    _set_status(client_id, "active", None, officer, verb="resume")
