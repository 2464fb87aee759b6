"""`exchange call`: one call to the exchange by hand, as a partner system makes it (curl cannot make DPoP proofs
or envelopes).

    exchange call --client-id border-panji-poyon --key-dir ~/exchange-keys --agency border \\
        POST /v1/screening '{"name": "Jurabek Nazarov", "birth_date": "1991"}'

Through the partner library: a token (cached between runs in the key folder, or --cache-dir, mode 0600, until it
expires), a DPoP proof, the body signed and sealed, the answer opened and verified. Prints the plaintext as JSON on
stdout, and the status, ETag, Location and audit receipt on stderr; a refusal prints the error code and message and
exits 1 (2 when the exchange cannot be reached).
"""

from __future__ import annotations

import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from exchange.partner.api import NO_BODY, ExchangeClient, Result
from exchange.partner.envelopes import PartnerKeys
from exchange.partner.errors import ConnectionFailed, ExchangeClientError
from exchange.partner.tokens import FileTokenCache
from exchange.protocol.policy import AGENCY_SCOPES

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")


def read_body(body: str | None) -> Any:
    """BODY as given: JSON text, `@file` (a file of JSON) or `-` (JSON on stdin); None when there is none."""
    if body is None:
        return NO_BODY
    if body == "-":
        text = sys.stdin.read()
        where = "stdin"
    elif body.startswith("@"):
        path = Path(body[1:]).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise click.BadParameter(f"cannot read {path}: {e.strerror}", param_hint="BODY") from e
        where = str(path)
    else:
        text, where = body, "BODY"
    try:
        return json.loads(text)
    except ValueError as e:
        raise click.BadParameter(f"{where} is not JSON: {e}", param_hint="BODY") from e


def split_target(target: str) -> tuple[str, dict[str, str | None]]:
    """`/v1/returnees?status=arrived` -> the path and its query parameters (the library signs them as sent)."""
    parsed = urllib.parse.urlsplit(target)
    if parsed.scheme or parsed.netloc or not parsed.path.startswith("/"):
        raise click.BadParameter("give the path on the exchange, such as /v1/returnees (the URL is --issuer)",
                                 param_hint="PATH")
    params: dict[str, str | None] = {}
    for name, value in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True):
        if name in params:
            raise click.BadParameter(f"the query names {name!r} twice", param_hint="PATH")
        params[name] = value
    return parsed.path, params


def _receipt_lines(result: Result) -> list[str]:
    lines = [f"HTTP {result.status}"]
    for label, value in (("ETag", result.etag), ("Location", result.location), ("request", result.request_id)):
        if value:
            lines.append(f"{label}: {value}")
    if result.audit is not None:
        lines.append(f"audit receipt: entry {result.audit.index}, leaf hash {result.audit.leaf_hash} "
                     "(signed by the exchange in the response envelope)")
    return lines


@click.command("call")
@click.option("--client-id", envvar="EXCHANGE_CLIENT_ID", required=True, help="Your client id (or EXCHANGE_CLIENT_ID).")
@click.option("--key-dir", type=click.Path(file_okay=False, path_type=Path), envvar="EXCHANGE_KEY_DIR", required=True,
              help="Folder of your auth, sign and enc keys (exchange clients keygen); or EXCHANGE_KEY_DIR.")
@click.option("--agency", type=click.Choice(sorted(AGENCY_SCOPES)), envvar="EXCHANGE_AGENCY", required=True,
              help="The agency your client is registered for (or EXCHANGE_AGENCY).")
@click.option("--issuer", "issuer", envvar="EXCHANGE_ISSUER", default="http://127.0.0.1:5000", show_default=True,
              help="The exchange's URL, as its operators publish it (or EXCHANGE_ISSUER).")
@click.option("--purpose", help="Purpose of use declared in the DPoP proof (default: the agency's only one).")
@click.option("--officer", envvar="EXCHANGE_OFFICER", help="The officer making the call (or EXCHANGE_OFFICER).")
@click.option("--case-ref", help="Case reference declared with the call.")
@click.option("--if-match", help="ETag (or version) of the record read, for PATCH.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to cache the access token between runs (default: the key folder).")
@click.option("--verify-receipt", is_flag=True,
              help="Also prove the call's audit entry is in the exchange's signed log.")
@click.option("--state", "state_file", type=click.Path(dir_okay=False, path_type=Path),
              help="With --verify-receipt: keep the last verified checkpoint here (default: in the cache folder).")
@click.argument("method", type=click.Choice(METHODS, case_sensitive=False))
@click.argument("path")
@click.argument("body", required=False)
def call_command(client_id: str, key_dir: Path, agency: str, issuer: str, purpose: str | None, officer: str | None,
                 case_ref: str | None, if_match: str | None, cache_dir: Path | None, verify_receipt: bool,
                 state_file: Path | None, method: str, path: str, body: str | None) -> None:
    """Make one signed, sealed call to the exchange and print its verified answer.

    \b
    METHOD PATH [BODY]: BODY is JSON text, @FILE or - (stdin), for POST and PATCH.
      exchange call ... GET '/v1/returnees?status=arrived'
      exchange call ... POST /v1/screening '{"name": "Jurabek Nazarov"}'
      exchange call ... PATCH /v1/returnees/ID --if-match '"3"' @changes.json
    """
    target, params = split_target(path)
    value = read_body(body)
    key_dir = key_dir.expanduser()
    keys = PartnerKeys.load(key_dir)  # MissingKeyFiles names the folder and the command that makes the keys
    cache = FileTokenCache((cache_dir or key_dir).expanduser() / f"token-{client_id}.json")
    try:
        with ExchangeClient(issuer, client_id=client_id, agency=agency, keys=keys, purpose=purpose, officer=officer,
                            case_ref=case_ref, token_cache=cache) as client:
            try:
                result = client.call(method.upper(), target, params=params or None, body=value, if_match=if_match)
            except ValueError as e:  # the library's own refusals before anything is sent (no purpose, bad path)
                raise click.UsageError(str(e)) from e
            if result.data is not None:
                out.print_json(data=result.data, ensure_ascii=False)
            for line in _receipt_lines(result):
                err.print(line)
            if verify_receipt and result.audit is not None:
                kept = state_file or (cache_dir or key_dir).expanduser() / f"audit-state-{client_id}.json"
                checkpoint = client.audit.verify(result.audit, state=kept)
                err.print(f"[green]verified[/]: entry {result.audit.index} is in the exchange's signed checkpoint of "
                          f"{checkpoint.size} entries, consistent with the one kept in {kept}")
    except ExchangeClientError as e:
        err.print(f"[red]error[/] {e.code} (HTTP {e.status}): {e.message}" if e.status else f"[red]error[/] {e}")
        if e.errors:
            err.print(json.dumps(e.errors, ensure_ascii=False, indent=2, sort_keys=True))
        if e.request_id:
            err.print(f"request: {e.request_id}")
        sys.exit(2 if isinstance(e, ConnectionFailed) else 1)
