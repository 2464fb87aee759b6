"""`exchange demo` plays the three agencies' story over real HTTP and leaves an audit log behind."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from exchange.demo import run_demo


def test_demo_story_runs_end_to_end(tmp_path: Path) -> None:
    output = io.StringIO()
    entries = run_demo(console=Console(file=output, width=160), workdir=tmp_path / "demo")
    text = output.getvalue()
    for expected in ("ASSIST_RETURN", "amnesty_granted", "charges_filed", "DETAIN", "detained",
                     "'Ҷӯрабек Назаров' score", "reason not shown: True", f"audit log: {entries} entries",
                     "its inclusion proof in the exchange's signed checkpoint", "who touched RT-2026-000001",
                     "prosecutor collect (amnesty-review) x1", "verified the whole log through the API",
                     "cosigned by witness.border.demo/w1, witness.interior.demo/w1, witness.prosecutor.demo/w1"):
        assert expected in text, expected
    assert entries >= 25  # tokens, every call, each with its entry
    assert (tmp_path / "demo" / "exchange.db").exists()
    assert list((tmp_path / "demo" / "receipts-prosecutor").glob("*.receipt.json"))  # each agency kept its receipts
