"""The `exchange` command line: set up, run and feed the exchange.

A plain click group (not Flask's `FlaskGroup`: its `--app`/`--env-file` options are not this tool's, and it makes
`app.run()` a no-op): the commands that need the app run inside it (the same `EXCHANGE_*` environment as the
server), and Flask's own `routes` and `shell` commands are added. Every known error ends in one line naming its code
and the fix, never a traceback (`ExchangeGroup.invoke`): exit status 1 for a refusal, 2 when the command could not
run at all (no database, no key store, no server).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import ScriptInfo, routes_command, shell_command, with_appcontext
from gunicorn.app.base import BaseApplication
from rich.console import Console
from rich.table import Table

from exchange import create_app
from exchange.app import serve_app
from exchange.audit import cli as audit_cli
from exchange.clients import cli as clients_cli
from exchange.console.cli import console_command
from exchange.db import db, dispose_engines
from exchange.events import cli as events_cli
from exchange.keys import cli as keys_cli
from exchange.keys.errors import KeyStoreError
from exchange.keys.master import MasterSecret, unlock
from exchange.keys.ring import key_ring
from exchange.partner import cli as partner_cli
from exchange.witness import cli as witness_cli

console = Console(stderr=False)
errors = Console(stderr=True, soft_wrap=True, highlight=False)


def _app() -> Flask:
    # Commands that need a private key unlock the key store on first use; the others run without the master secret.
    return create_app({"LAZY_KEY_STORE": True})


def _database_hint(error: Exception) -> str:
    """What a database error means for someone at the command line, with the URL (never its password)."""
    url = os.environ.get("EXCHANGE_DATABASE_URL") or "the default SQLite database (instance/exchange.db)"
    try:
        from sqlalchemy.engine import make_url

        url = make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: S110  (an unparsable URL is shown as the user gave it)
        pass
    cause = str(getattr(error, "orig", None) or error).splitlines()[0]
    return (f"cannot use the database {url}: {cause}. Set EXCHANGE_DATABASE_URL to the exchange's database, "
            "or create one with `exchange init`.")


def explain(error: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit status for a known error, or None for a bug (which keeps its traceback)."""
    from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError

    from exchange.partner.envelopes import MissingKeyFiles
    from exchange.partner.errors import ExchangeClientError
    from exchange.protocol.errors import ExchangeError

    if isinstance(error, ExchangeError):
        fix = f" {hint}" if (hint := _HINTS.get(error.code)) else ""
        return f"refused ({error.code}): {error.message}{fix}", 2 if error.status >= 500 else 1
    if isinstance(error, ExchangeClientError):
        return (str(error), 2) if error.status == 0 else (f"the exchange refused: {error}", 1)
    if isinstance(error, OperationalError | ProgrammingError | ArgumentError):
        return _database_hint(error), 2
    if isinstance(error, MissingKeyFiles):
        return str(error), 2
    if isinstance(error, FileNotFoundError | PermissionError | IsADirectoryError):
        return f"{error.strerror or 'cannot read'}: {error.filename}", 2
    return None


_HINTS = {
    "master_secret_wrong": "The store was sealed under another master secret: set the passphrase or key it was made "
                           "with (a store made by `exchange demo` without EXCHANGE_MASTER_PASSPHRASE cannot be "
                           "opened again).",
}


class ExchangeGroup(click.Group):
    """The top-level group: runs a command, and turns a known error into a message and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as e:
            explained = explain(e)
            if explained is None:
                raise
            message, status = explained
            errors.print(f"[red]error:[/] {message}", markup=True)
            ctx.exit(status)


@click.group(
    cls=ExchangeGroup,
    help="""Returnee Exchange: the inter-agency returnee register.

    \b
    First run:   exchange init && exchange demo-data && exchange serve
    Try it:      exchange demo
    Partners:    exchange clients keygen --out DIR; exchange call --client-id ID --agency border --key-dir DIR GET ...
    Production:  exchange serve --host 0.0.0.0 --port 8000 --workers 4 (gunicorn)

    Configuration comes from EXCHANGE_* environment variables (see README.md); with none set, the exchange keeps a
    SQLite database in its instance folder and its key store in keys/.
    """,
)
@click.pass_context
def main(ctx: click.Context) -> None:
    ctx.obj = ScriptInfo(create_app=_app, set_debug_flag=False, load_dotenv_defaults=False)
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
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every one).")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="gunicorn worker processes.")
@with_appcontext
def serve_command(host: str, port: int, workers: int) -> None:
    """Serve the exchange with gunicorn (the same server as production: `gunicorn wsgi:app`); Ctrl-C stops it.

    Refuses to start without the master secret. Partners must reach it at EXCHANGE_ISSUER (default
    http://127.0.0.1:5000): tokens and proofs name that URL.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    key_ring(app).store.unlock()  # refuse to start without the master secret (a KeyStoreError, explained)
    issuer = app.config["ISSUER"]
    console.print(f"[bold]Returnee Exchange[/] on http://{host}:{port} with {workers} workers "
                  f"(issuer {issuer}; OpenAPI: /openapi.json, docs: /docs)", soft_wrap=True)
    if issuer.rstrip("/") != f"http://{host}:{port}":
        console.print(f"[yellow]partners must call {issuer}[/] (EXCHANGE_ISSUER): set it to the URL they use",
                      soft_wrap=True)
    sys.stdout.flush()
    dispose_engines()  # nothing of this process's pools may leak into the forked workers
    # threaded workers and a timeout above the 30 s long poll of GET /v1/events (a waiting partner holds a thread)
    _Gunicorn({"bind": f"{host}:{port}", "workers": workers, "worker_class": "gthread", "threads": 8, "timeout": 60,
               "graceful_timeout": 10}).run()


# gunicorn ships no type hints: its BaseApplication is Any to mypy
class _Gunicorn(BaseApplication):  # type: ignore[misc]
    """gunicorn run from Python: each worker builds its own app with `serve_app()`, exactly as `wsgi:app`."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self) -> Flask:
        return serve_app()


@main.command("demo-data")
@click.option("--append", is_flag=True, help="Load even if the register already holds returnees.")
@with_appcontext
def demo_data_command(append: bool) -> None:
    """Load a realistic set of returnees through the service layer, each at a different lifecycle stage."""
    from exchange.register.demo import load_demo_data

    colours = {"interior": "cyan", "border": "yellow", "prosecutor": "magenta"}
    out = _story_console()

    def narrate(agency: str, text: str) -> None:
        out.print(f"[bold {colours[agency]}]{agency:>10}[/]  {text}")

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
    out.print(table)
    out.print("[bold]Next:[/] `exchange serve`, then register a partner (`exchange clients keygen`, `exchange clients "
              "add`) and screen a name of this register, e.g. `exchange call ... POST /v1/screening "
              "'{\"name\": \"Jurabek Nazarov\"}'`")


@main.command("demo")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the demo's database and keys here (default: a temporary folder, removed afterwards).")
def demo_command(directory: Path | None) -> None:
    """Play the three agencies' story through the client library against a real HTTP server (fresh SQLite, keys).

    With --dir, the keys are sealed under EXCHANGE_MASTER_PASSPHRASE (or EXCHANGE_MASTER_KEY) when one is set, so
    that `exchange audit ...` can open the kept folder afterwards.
    """
    from exchange.demo import run_demo

    if directory is not None and (directory / "exchange.db").exists():
        raise click.UsageError(f"{directory} already holds a demo: choose a new folder")
    run_demo(console=_story_console(), workdir=directory)


def _story_console() -> Console:
    """A terminal's width on a terminal; piped, lines are not wrapped in mid-phrase (tables keep a width of 120)."""
    return console if console.is_terminal else Console(soft_wrap=True, width=120, highlight=False)


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
audit_cli.audit.add_command(console_command)  # the console sits above audit/: it is added from here
main.add_command(audit_cli.audit)
main.add_command(keys_cli.keys)
main.add_command(partner_cli.call_command)
main.add_command(routes_command)
main.add_command(shell_command)
main.add_command(witness_cli.witness)
main.add_command(events_cli.deliver_command)
