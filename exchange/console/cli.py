"""`exchange audit console`: load, verify and index the log, then serve the console on 127.0.0.1."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import webbrowser
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import click
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from exchange.audit.services import StoredEntry
from exchange.audit.verify import DEFAULT_STATE, LogSource
from exchange.console.loader import Loader, Settings, export_source
from exchange.console.rules import RuleConfig
from exchange.console.store import Reviews
from exchange.console.web import create_console
from exchange.protocol.checkpoint import NoteVerifier
from exchange.protocol.encoding import b64url_decode

DEFAULT_DATA = Path("~/.local/share/exchange/console")
HOST = "127.0.0.1"  # never anything else: the console is the auditor's own


def serve(loader: Loader, reviews: Reviews, *, port: int) -> BaseWSGIServer:
    """Start the load and return the (not yet serving) HTTP server on 127.0.0.1; `port` 0 picks a free one."""
    apps: list[Flask] = []  # the app checks the Host header, so it is made once the port is known

    def dispatch(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        return apps[0](environ, start_response)

    server = make_server(HOST, port, dispatch, threaded=True)
    apps.append(create_console(loader, reviews, port=server.server_port))
    loader.start()
    return server


def server_source(url: str, client_id: str, keys_dir: Path, officer: str | None, keys: tuple[str, ...],
                  state_path: Path) -> tuple[Callable[[], tuple[LogSource, list[NoteVerifier], str]],
                                             Callable[[int, int], Iterator[StoredEntry]]]:
    """The log of a running exchange, read with the auditor's own client through the partner library."""
    from exchange.audit.remote import ServerSource
    from exchange.audit.verify import TrustState
    from exchange.partner.api import ExchangeClient

    client = ExchangeClient.from_files(url, client_id, "auditor", keys_dir, purpose="oversight", officer=officer)

    def make() -> tuple[LogSource, list[NoteVerifier], str]:
        source = ServerSource(client)
        note = source.checkpoint()
        state = TrustState.load(state_path) if state_path.exists() else None
        origin = state.origin if state else note.split("\n", 1)[0]
        verifiers = [NoteVerifier.from_vkey(k) for k in keys]
        if not verifiers and state is None:
            # trust on first use: the audit keys the exchange publishes (remembered in the state file)
            published = client._connection.published_keys().audit
            verifiers = [NoteVerifier(name=origin, public_key=raw) for raw in published]
        return _Fixed(source, note), verifiers, origin

    def remote(start: int, end: int) -> Iterator[StoredEntry]:
        for item in client.audit.iterate_entries(start, end):
            stored = item.get("leaf_hash")
            yield StoredEntry(int(item["index"]), b64url_decode(item["leaf"]),
                              b64url_decode(stored) if stored else None)

    return make, remote


class _Fixed:
    """A server source whose checkpoint was read once (the verifier reads it again: it must be the same note)."""

    def __init__(self, inner: LogSource, note: str) -> None:
        self.inner, self.note, self.description = inner, note, inner.description

    def checkpoint(self) -> str:
        return self.note

    def entries(self, end: int) -> Iterator[StoredEntry]:
        return self.inner.entries(end)

    def checkpoint_sizes(self) -> list[int]:
        return []

    def checkpoint_note(self, size: int) -> str | None:
        return None

    def uncovered(self) -> int | None:
        return self.inner.uncovered()


@click.command("console")
@click.option("--export", "export_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An export (exchange audit export, GET /v1/audit/export): works offline.")
@click.option("--server", metavar="URL", help="A running exchange, read through the API with your auditor client.")
@click.option("--client-id", envvar="EXCHANGE_CLIENT_ID", help="With --server: your auditor client's id.")
@click.option("--client-keys", type=click.Path(file_okay=False, path_type=Path), envvar="EXCHANGE_CLIENT_KEYS",
              help="With --server: the folder of your client's auth/sign/enc keys.")
@click.option("--port", default=8600, show_default=True, type=click.IntRange(0, 65535),
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser; print the address.")
@click.option("--key", "keys", multiple=True, metavar="VKEY", help="Trusted checkpoint key (exchange audit key).")
@click.option("--witness", "witnesses", multiple=True, metavar="VKEY",
              help="A witness key whose cosignatures the badge checks (repeatable).")
@click.option("--state", "state_file", type=click.Path(dir_okay=False, path_type=Path), default=str(DEFAULT_STATE),
              show_default=True, help="Trust-on-first-use state, shared with exchange audit verify.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=str(DEFAULT_DATA),
              show_default=True, help="Where the index (server mode) and your review notes are kept.")
@click.option("--working-hours", default="07:00-19:00", show_default=True, help="For the out-of-hours rule.")
@click.option("--working-days", default="Mon-Fri", show_default=True)
@click.option("--timezone", default="UTC", show_default=True, help="Of the working hours and the heat map.")
@click.option("--bulk-records", default=20, show_default=True, type=click.IntRange(2),
              help="Distinct records one client may consult within an hour before it is flagged.")
@click.option("--denial-burst", default=10, show_default=True, type=click.IntRange(2),
              help="Refusals from one client or address within 10 minutes before it is flagged.")
@click.option("--officer", envvar="EXCHANGE_OFFICER", help="Your officer id, declared on every call (--server).")
def console_command(export_file: Path | None, server: str | None, client_id: str | None, client_keys: Path | None,
                    port: int, no_browser: bool, keys: tuple[str, ...], witnesses: tuple[str, ...],
                    state_file: Path, data_dir: Path, working_hours: str, working_days: str, timezone: str,
                    bulk_records: int, denial_burst: int, officer: str | None) -> None:
    """The auditor's console: verify the log and review who looked at whom, when and why, in a local web page.

    Serves on 127.0.0.1 only. Loads the log from an export (--export) or from a running exchange (--server, with
    your auditor client; incremental: the local index is kept and only new entries are fetched), verifies every
    entry and the checkpoint, and indexes it locally.
    """
    if (export_file is None) == (server is None):
        raise click.UsageError("give one of --export FILE or --server URL")
    try:
        start, end = RuleConfig.parse_hours(working_hours)
        rules = RuleConfig(bulk_records=bulk_records, denial_burst=denial_burst, work_start=start, work_end=end,
                           work_days=RuleConfig.parse_days(working_days), timezone=timezone)
        from zoneinfo import ZoneInfo
        ZoneInfo(timezone)
        for vkey in keys:
            NoteVerifier.from_vkey(vkey)
    except Exception as e:  # noqa: BLE001 - every bad option is a usage error
        raise click.UsageError(str(e)) from e
    data = data_dir.expanduser()
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    state_path = state_file.expanduser()
    scratch = tempfile.TemporaryDirectory(prefix="exchange-console-")
    with scratch:
        if export_file is not None:
            settings = Settings(index_path=Path(scratch.name) / "index.sqlite", state_path=state_path, keys=keys,
                                witnesses=witnesses, rules=rules)
            loader = Loader(settings, export_source(export_file, keys))
        else:
            if not client_id or client_keys is None:
                raise click.UsageError("--server needs your auditor client: --client-id and --client-keys")
            name = hashlib.sha256(f"{server}\n{client_id}".encode()).hexdigest()[:16]
            settings = Settings(index_path=data / f"index-{name}.sqlite", state_path=state_path, keys=keys,
                                witnesses=witnesses, rules=rules)
            try:
                make, remote = server_source(str(server), client_id, client_keys.expanduser(), officer, keys,
                                             state_path)
            except (OSError, ValueError) as e:
                raise click.UsageError(f"cannot load the client keys from {client_keys}: {e}") from e
            loader = Loader(settings, make, remote=remote)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request on the auditor's terminal
        http = serve(loader, Reviews(data / "reviews.sqlite"), port=port)
        url = f"http://{HOST}:{http.server_port}/"
        click.echo(f"the auditor's console: {url}  (Ctrl-C to stop)")
        if not no_browser:
            webbrowser.open(url)
        try:
            http.serve_forever()
        except KeyboardInterrupt:
            click.echo("stopped")
        finally:
            http.server_close()
