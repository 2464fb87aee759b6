"""Write `schemas/test-vectors/witness/witness-v1.json`: `python -m exchange.witness.vectors`.

The vectors (`exchange.protocol.witness_vectors`) with the answers of a real witness: a fresh one, with the vectors'
key, knowing the vectors' log, answering each request in turn at the vector's time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from exchange.config import PROJECT_ROOT
from exchange.protocol import witness_vectors as v
from exchange.protocol.checkpoint import NoteVerifier
from exchange.witness.errors import WitnessError
from exchange.witness.services import Witness, WitnessIdentity
from exchange.witness.state import WitnessState

PATH = PROJECT_ROOT / "schemas" / "test-vectors" / "witness" / "witness-v1.json"


@contextmanager
def vector_witness() -> Iterator[v.Answer]:
    with tempfile.TemporaryDirectory() as folder:
        state = WitnessState(Path(folder) / "state.db")
        log = NoteVerifier(name=v.ORIGIN, public_key=bytes(v.log_key().verify_key))
        state.add_log(origin=v.ORIGIN, vkey=log.vkey)
        now = [0]
        witness = Witness(identity=WitnessIdentity(name=v.WITNESS_NAME, signing_key=v.witness_key()), state=state,
                          clock=lambda: now[0])

        def answer(body: bytes, at: int) -> tuple[int, str, bytes]:
            now[0] = at
            try:
                return 200, "text/plain; charset=utf-8", witness.add_checkpoint(body)
            except WitnessError as e:
                return e.status, e.content_type, e.body

        yield answer


def build() -> dict[str, Any]:
    with vector_witness() as answer:
        return v.build_vectors(answer)


if __name__ == "__main__":
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text(v.render(build()), encoding="utf-8")
    print(PATH)
