"""`exchange call` against a live exchange: token (cached between runs), proof, sealed body, verified answer."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from exchange.cli import main
from tests.server import LiveExchange, free_port, live_exchange

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveExchange]:
    with live_exchange(tmp_path_factory.mktemp("call"), demo_data=True, workers=1) as exchange:
        yield exchange


@pytest.fixture(scope="module")
def border(live: LiveExchange) -> tuple[str, Path]:
    return live.register("border")


def call(live: LiveExchange, client: tuple[str, Path], *args: str, agency: str = "border", stdin: str | None = None,
         issuer: str | None = None) -> tuple[int, str, str]:
    client_id, key_dir = client
    result = CliRunner().invoke(main, ["call", "--client-id", client_id, "--key-dir", str(key_dir), "--agency", agency,
                                       "--issuer", issuer or live.base, *args], input=stdin, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_a_screening_prints_the_verified_answer_the_status_and_the_receipt(
    live: LiveExchange, border: tuple[str, Path]
) -> None:
    code, out, err = call(live, border, "POST", "/v1/screening", '{"name": "Jurabek Nazarov", "birth_date": "1991"}')
    assert code == 0, out + err
    [top, *_] = json.loads(out)["candidates"]
    assert top["returnee"]["person_name"]["full"] == "Ҷӯрабек Назаров"  # pretty JSON, not escaped
    assert "HTTP 200" in err and "audit receipt: entry " in err


def test_the_token_is_cached_in_the_key_folder_and_reused(live: LiveExchange, border: tuple[str, Path]) -> None:
    cache = border[1] / f"token-{border[0]}.json"
    assert call(live, border, "GET", "/v1/returnees?status=arrived")[0] == 0
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    first = json.loads(cache.read_text())
    assert first["for"]["client_id"] == border[0] and first["expires_at"] > 0
    code, out, err = call(live, border, "GET", "/v1/returnees?page_size=2")
    assert code == 0, err
    assert json.loads(out)["page_size"] == 2
    assert json.loads(cache.read_text())["access_token"] == first["access_token"]  # no second token was fetched
    cache.write_text(json.dumps({**first, "expires_at": 1.0}))  # expired: a new one is fetched
    assert call(live, border, "GET", "/v1/returnees")[0] == 0
    assert json.loads(cache.read_text())["access_token"] != first["access_token"]


def test_the_body_comes_from_a_file_or_stdin(live: LiveExchange, border: tuple[str, Path], tmp_path: Path) -> None:
    body = tmp_path / "query.json"
    body.write_text('{"name": "Orif Davlatov"}')
    code, out, _ = call(live, border, "POST", "/v1/screening", f"@{body}")
    assert code == 0 and json.loads(out)["candidates"][0]["returnee"]["active_border_instruction"]["instruction"]
    code, out, _ = call(live, border, "POST", "/v1/screening", "-", stdin='{"document_number": "400 000 001"}')
    assert code == 0 and "candidates" in json.loads(out)


def test_a_refusal_prints_the_code_the_message_and_the_field_errors(
    live: LiveExchange, border: tuple[str, Path]
) -> None:
    code, out, err = call(live, border, "POST", "/v1/screening", '{"name": "x", "shoe_size": 44}')
    assert code == 1 and out == ""
    assert "error validation_failed (HTTP 422)" in err and "shoe_size" in err and "request: " in err
    code, _, err = call(live, border, "POST", "/v1/returnees", "{}")
    assert code == 1 and "insufficient_scope" in err and "Traceback" not in err


def test_verify_receipt_proves_the_call_is_in_the_signed_log(live: LiveExchange, border: tuple[str, Path]) -> None:
    code, _, err = call(live, border, "--verify-receipt", "POST", "/v1/screening", '{"name": "Jurabek Nazarov"}')
    assert code == 0, err
    assert "verified: entry " in err and (border[1] / f"audit-state-{border[0]}.json").exists()
    code, _, err = call(live, border, "--verify-receipt", "POST", "/v1/screening", '{"name": "Jurabek Nazarov"}')
    assert code == 0 and "verified: entry " in err  # the second check is consistent with the kept checkpoint


def test_messages_that_lead_to_the_fix(live: LiveExchange, border: tuple[str, Path], tmp_path: Path) -> None:
    code, _, err = call(live, ("nobody", tmp_path / "no-keys"), "GET", "/v1/returnees")
    assert code == 2 and f"exchange clients keygen --out {tmp_path / 'no-keys'}" in err and "Traceback" not in err
    port = free_port()
    code, _, err = call(live, border, "GET", "/v1/returnees", issuer=f"http://127.0.0.1:{port}")
    assert code == 2 and f"http://127.0.0.1:{port}/.well-known/oauth-authorization-server" in err
    assert "ConnectError" in err
    other = live.base.replace("127.0.0.1", "localhost")
    code, _, err = call(live, border, "GET", "/v1/returnees", issuer=other)
    assert code == 1 and "issuer_mismatch" in err and "EXCHANGE_ISSUER" in err
    code, _, err = call(live, border, "GET", "/v1/returnees", agency="interior")
    assert code == 2 and "a client of agency 'interior' calls for one of amnesty-vetting" in err
    code, _, err = call(live, border, "POST", "/v1/screening", "{not json")
    assert code == 2 and "BODY is not JSON" in err


def test_from_keygen_to_a_verified_call_with_the_cli_alone(
    live: LiveExchange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's path for a new border client: keygen, an officer's `clients add`, then `exchange call`."""
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", live.database_url)
    monkeypatch.setenv("EXCHANGE_KEYS_DIR", str(live.workdir / "keys"))
    monkeypatch.setenv("EXCHANGE_OFFICER", "TJ-SEC-0007")
    keys = tmp_path / "border-keys"
    runner = CliRunner()
    result = runner.invoke(main, ["clients", "keygen", "--out", str(keys)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["clients", "add", "--client-id", "border-new-post", "--agency", "border",
                                  "--name", "Border post (new)", "--key-dir", str(keys)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    code, out, err = call(live, ("border-new-post", keys), "--verify-receipt", "POST", "/v1/screening",
                          '{"name": "Jurabek Nazarov", "birth_date": "1991"}')
    assert code == 0, err
    assert json.loads(out)["candidates"][0]["returnee"]["register_number"].startswith("RT-")
    assert "verified: entry " in err
