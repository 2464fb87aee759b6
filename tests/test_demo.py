"""`exchange demo` plays the three agencies' story over real HTTP and leaves an audit log behind."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from exchange.cli import main
from exchange.demo import run_demo


def test_demo_story_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXCHANGE_MASTER_KEY", raising=False)
    monkeypatch.delenv("EXCHANGE_MASTER_PASSPHRASE", raising=False)
    output = io.StringIO()
    entries = run_demo(console=Console(file=output, width=160), workdir=tmp_path / "demo")
    text = output.getvalue()
    for expected in ("ASSIST_RETURN", "amnesty_granted", "charges_filed", "DETAIN", "detained",
                     "'Ҷӯрабек Назаров' score", "DETAIN (the border sees the instruction, never its reason)",
                     "the crossing's outcome is detained; in the register he is now arrived", "Europol 4x4 grading",
                     f"audit log: {entries} entries", "Next: run your own exchange",
                     "its inclusion proof in the exchange's signed checkpoint", "who touched RT-2026-000001",
                     "prosecutor collect (amnesty-review) x1", "verified the whole log through the API",
                     "cosigned by witness.border.demo/w1, witness.interior.demo/w1, witness.prosecutor.demo/w1"):
        assert expected in text, expected
    assert entries >= 25  # tokens, every call, each with its entry
    assert (tmp_path / "demo" / "exchange.db").exists()
    assert list((tmp_path / "demo" / "receipts-prosecutor").glob("*.receipt.json"))  # each agency kept its receipts
    assert "keys sealed under a one-time master key" in text  # no passphrase set: the kept store cannot be opened


def test_a_kept_demo_is_sealed_under_the_passphrase_and_opens_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EXCHANGE_MASTER_KEY", raising=False)
    monkeypatch.setenv("EXCHANGE_MASTER_PASSPHRASE", "correct horse battery staple")
    monkeypatch.setenv("EXCHANGE_MASTER_KDF", "interactive")
    folder = tmp_path / "demo"
    runner = CliRunner()
    result = runner.invoke(main, ["demo", "--dir", str(folder)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "keys sealed under EXCHANGE_MASTER_PASSPHRASE" in result.output
    assert "Europol 4x4 grading), vetted" in result.output  # piped: no line broken in mid-phrase
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", f"sqlite:///{folder / 'exchange.db'}")
    monkeypatch.setenv("EXCHANGE_KEYS_DIR", str(folder / "keys"))
    export = tmp_path / "export.jsonl"
    result = runner.invoke(main, ["audit", "export", "-o", str(export)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(export.read_text().splitlines()) > 25
    monkeypatch.setenv("EXCHANGE_MASTER_PASSPHRASE", "another passphrase entirely")
    result = runner.invoke(main, ["audit", "export", "-o", str(export)], catch_exceptions=False)
    assert result.exit_code == 2 and "master_secret_wrong" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, ["demo", "--dir", str(folder)], catch_exceptions=False)
    assert result.exit_code == 2 and "already holds a demo" in result.output
