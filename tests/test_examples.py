"""The scripts in examples/ run, unchanged, against a live exchange, each as its agency's registered client."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import LiveExchange, live_exchange

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveExchange]:
    with live_exchange(tmp_path_factory.mktemp("examples"), demo_data=True) as live:
        yield live


def example(live: LiveExchange, script: str, agency: str, *extra: str, env: bool = False) -> str:
    client_id, key_dir = live.register(agency)
    args = [live.base, client_id, str(key_dir)]
    environ = {**os.environ}
    if env:  # the same settings from the environment instead of argv
        environ.update(EXCHANGE_ISSUER=live.base, EXCHANGE_CLIENT_ID=client_id, EXCHANGE_KEY_DIR=str(key_dir))
        args = ["", "", ""] if extra else []
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *args, *extra], capture_output=True, text=True,
                          env=environ, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_interior_registers_a_returnee_the_border_then_screens_and_lets_in(exchange: LiveExchange) -> None:
    out = example(exchange, "interior.py", "interior", "Gulmurod Khalimov")
    assert "registered RT-" in out and "(reported)" in out and "ASSIST_RETURN to every border post" in out
    assert out.rstrip().endswith("is expected")
    number = out.split("registered ", 1)[1].split()[0]
    out = example(exchange, "border.py", "border", "Gulmurod Halimov", "1975", env=True)
    assert f"'Gulmurod Halimov': {number} " in out and "instruction ASSIST_RETURN" in out
    assert "recorded (handed_over)" in out and "is in the signed log of" in out


def test_border_screens_a_name_of_the_demo_register_by_default(exchange: LiveExchange) -> None:
    out = example(exchange, "border.py", "border")
    assert "'Jurabek Nazarov': RT-" in out and "is in the signed log of" in out


def test_prosecutor_decides_on_a_returnee_under_review(exchange: LiveExchange) -> None:
    out = example(exchange, "prosecutor.py", "prosecutor")
    assert ": amnesty_granted (GP-" in out and "-> amnesty_granted" in out


def test_auditor_verifies_the_log_and_later_that_it_only_grew(exchange: LiveExchange) -> None:
    client_id, key_dir = exchange.register("auditor")
    for run in (1, 2):
        done = subprocess.run([sys.executable, str(EXAMPLES / "auditor.py"), exchange.base, client_id, str(key_dir)],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "verified " in done.stdout
        assert ("first use" if run == 1 else "consistent with the") in done.stdout
