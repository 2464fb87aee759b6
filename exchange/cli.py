"""The `exchange` command line: set up, run and feed the exchange.

Built on Flask's CLI integration, so every command runs inside the configured app (the same `EXCHANGE_*`
environment as the server) and Flask's own `routes` and `shell` commands are there too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from rich.console import Console
from rich.table import Table

from exchange import create_app
from exchange.audit import cli as audit_cli
from exchange.clients import cli as clients_cli
from exchange.db import db, dispose_engines
from exchange.events import cli as events_cli
from exchange.keys import cli as keys_cli
from exchange.keys.errors import KeyStoreError
from exchange.keys.master import MasterSecret, unlock
from exchange.keys.ring import key_ring

console = Console(stderr=False)


def _app() -> Flask:
    # Commands that need a private key unlock the key store on first use; the others run without the master secret.
    return create_app({"LAZY_KEY_STORE": True})


@click.group(
    cls=FlaskGroup,
    create_app=_app,
    load_dotenv=False,
    set_debug_flag=False,
    help="""Returnee Exchange: the inter-agency returnee register.

    \b
    First run:   exchange init && exchange demo-data && exchange serve
    Production:  gunicorn --workers 4 --bind 0.0.0.0:8000 wsgi:app

    Configuration comes from EXCHANGE_* environment variables (see README.md); with none set, the exchange keeps a
    SQLite database in its instance folder and its key store in keys/.
    """,
)
@click.pass_context
def main(ctx: click.Context) -> None:
    ctx.call_on_close(dispose_engines)


@main.command("init")
@with_appcontext
def init_command() -> None:
    """Create or upgrade the database schema and the sealed key store with every exchange key (safe to run again).

    Needs EXCHANGE_MASTER_PASSPHRASE (or EXCHANGE_MASTER_KEY): the first run seals the store under it, later runs
    check it. Without it, or with a wrong one, nothing is changed.
    """
    from exchange import migrate

    keys_dir = Path(current_app.config["KEYS_DIR"])
    try:
        unlock(keys_dir, MasterSecret.from_environment(), create=True)  # before anything else changes
    except KeyStoreError as e:
        console.print(f"[red]key store refused ({e.code}):[/] {e.message}")
        sys.exit(1)
    os.chmod(keys_dir, 0o700)
    engine = db.engine(current_app._get_current_object())  # type: ignore[attr-defined]
    url = engine.url.render_as_string(hide_password=True)
    if engine.url.get_backend_name() == "sqlite" and engine.url.database:
        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
    before = migrate.current_revision(engine)
    migrate.upgrade(engine)
    after = migrate.current_revision(engine)
    state = "already current" if before == after else f"migrated {before or 'empty'} -> {after}"
    console.print(f"[green]database[/] {url}: {state}")
    console.print(f"[green]key store[/] {keys_dir} (mode 0700, sealed under the master key)")
    created = {k.kid for k in keys_cli.initialise_keys()}
    ring = key_ring()
    states = ring.states()
    for key in ring.snapshot().keys:
        if states[key.kid] == "active":
            console.print(f"  {key.purpose:<14} key {key.kid}{' (new)' if key.kid in created else ''}")


@main.group("db")
def db_group() -> None:
    """Database schema: upgrade, show the current revision, or autogenerate a new migration."""


@db_group.command("upgrade")
@click.option("--revision", default="heads", show_default=True)
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from exchange import migrate

    migrate.upgrade(db.engine(current_app._get_current_object()), revision)  # type: ignore[attr-defined]
    console.print("[green]database upgraded[/]")


@db_group.command("current")
@with_appcontext
def db_current() -> None:
    """Print the database's revision and the newest one shipped."""
    from exchange import migrate

    engine = db.engine(current_app._get_current_object())  # type: ignore[attr-defined]
    console.print(f"current: {migrate.current_revision(engine)}  head: {migrate.head_revision(engine)}")


@db_group.command("revision")
@click.option("-m", "--message", required=True)
@with_appcontext
def db_revision(message: str) -> None:
    """Autogenerate a migration from the models (developers: review it, then commit it)."""
    from exchange import migrate

    migrate.revision(db.engine(current_app._get_current_object()), message)  # type: ignore[attr-defined]


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@with_appcontext
def serve_command(host: str, port: int) -> None:
    """Run the development server (one process; for production use gunicorn, printed below)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        key_ring(app).store.unlock()  # refuse to start without the master secret
    except KeyStoreError as e:
        console.print(f"[red]refusing to start ({e.code}):[/] {e.message}")
        sys.exit(1)
    console.print(f"[bold]Returnee Exchange[/] on http://{host}:{port}  (OpenAPI: /openapi.json, docs: /docs)")
    console.print("Production: [cyan]gunicorn --workers 4 --bind 0.0.0.0:8000 wsgi:app[/]")
    app.run(host=host, port=port, debug=False, use_reloader=False)


@main.command("demo-data")
@click.option("--append", is_flag=True, help="Load even if the register already holds returnees.")
@with_appcontext
def demo_data_command(append: bool) -> None:
    """Load a realistic set of returnees through the service layer, each at a different lifecycle stage."""
    from exchange.register.demo import load_demo_data

    colours = {"interior": "cyan", "border": "yellow", "prosecutor": "magenta"}

    def narrate(agency: str, text: str) -> None:
        console.print(f"[bold {colours[agency]}]{agency:>10}[/]  {text}")

    loaded = load_demo_data(db.session, append=append, step=narrate)
    if loaded is None:
        console.print("The register already holds returnees; nothing loaded (use --append to add more).")
        return
    db.session.commit()
    table = Table(title=f"Demo register: {len(loaded)} returnees")
    for column in ("register number", "name", "status", "risk", "border instruction"):
        table.add_column(column)
    for row in loaded:
        table.add_row(*row)
    console.print(table)


@main.command("demo")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the demo's database and keys here (default: a temporary folder, removed afterwards).")
def demo_command(directory: Path | None) -> None:
    """Play the three agencies' story through the client library against a real HTTP server (fresh SQLite, keys)."""
    from exchange.demo import run_demo

    run_demo(console=console, workdir=directory)


@main.group("schemas")
def schemas_group() -> None:
    """The language-neutral contract files in schemas/ (generated from the code)."""


@schemas_group.command("write")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None)
@with_appcontext
def schemas_write(directory: Path | None) -> None:
    """Regenerate schemas/openapi.json from the marshmallow schemas."""
    from exchange.contracts import CONTRACTS_DIR, write_contracts

    written = write_contracts(current_app._get_current_object(), directory or CONTRACTS_DIR)  # type: ignore[attr-defined]
    for path in written:
        console.print(f"wrote {path}")


@schemas_group.command("check")
@with_appcontext
def schemas_check() -> None:
    """Exit non-zero when schemas/ is stale (CI runs this through the tests)."""
    from exchange.contracts import stale_contracts

    stale = stale_contracts(current_app._get_current_object())  # type: ignore[attr-defined]
    if stale:
        console.print(f"[red]stale:[/] {', '.join(stale)}  (run: exchange schemas write)")
        sys.exit(1)
    console.print("[green]schemas/ is current[/]")


main.add_command(clients_cli.clients)
main.add_command(audit_cli.audit)
main.add_command(keys_cli.keys)
main.add_command(events_cli.deliver_command)
