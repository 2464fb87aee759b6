"""Loading the log: read it from a source, verify it with the offline verifier, index what was verified.

One pass: `_Tee` is a `LogSource` around the real one. `verify_log` pulls each entry from it and checks it (its
place, its own index, its stored leaf hash); only when the verifier asks for the next entry has the previous one
passed, and only then is it parsed and handed to the index and the rules. At the end the verifier compares the
recomputed root with the signed checkpoint and with the auditor's kept state; the badge says what held.

From a server the load is incremental: the index is kept between runs, its entries are re-verified from the local
file (no network) and only the entries after it are fetched, each call made by the auditor's own client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from exchange.audit.services import StoredEntry
from exchange.audit.verify import DEFAULT_STATE, ExportSource, LogSource, TrustState, verify_log
from exchange.console.cosign import WitnessKey, cosignatures
from exchange.console.rules import Analyzer, RuleConfig
from exchange.console.store import LAYOUT, Indexer, parse_time
from exchange.protocol.audit_errors import InvalidCheckpoint, LogMismatch, VerificationError
from exchange.protocol.checkpoint import NoteVerifier, verify_checkpoint


@dataclass
class Status:
    """What the page shows while loading, and the badge once done."""

    phase: str = "starting"  # starting, verifying, indexing, done, failed
    done: int = 0
    total: int | None = None
    started: float = field(default_factory=time.monotonic)
    badge: dict[str, Any] | None = None
    origin: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"phase": self.phase, "done": self.done, "total": self.total, "badge": self.badge,
                "elapsed": round(time.monotonic() - self.started, 1)}


@dataclass(frozen=True, kw_only=True)
class Settings:
    index_path: Path
    state_path: Path = DEFAULT_STATE
    keys: tuple[str, ...] = ()
    witnesses: tuple[str, ...] = ()
    rules: RuleConfig = field(default_factory=RuleConfig)
    keep_state: bool = True


class _Tee:
    """A `LogSource` that hands each entry the verifier accepted to `accept`, and reads the first `kept` entries
    from the local index (server mode) instead of the source."""

    def __init__(self, inner: LogSource, accept: Callable[[StoredEntry], None], *,
                 local: Callable[[int], Iterator[StoredEntry]] | None = None,
                 remote: Callable[[int, int], Iterator[StoredEntry]] | None = None, kept: int = 0) -> None:
        self.inner = inner
        self.description = inner.description
        self.accept = accept
        self.local, self.remote, self.kept = local, remote, kept

    def checkpoint(self) -> str:
        return self.inner.checkpoint()

    def checkpoint_sizes(self) -> list[int]:
        return self.inner.checkpoint_sizes()

    def checkpoint_note(self, size: int) -> str | None:
        return self.inner.checkpoint_note(size)

    def uncovered(self) -> int | None:
        return self.inner.uncovered()

    def entries(self, end: int) -> Iterator[StoredEntry]:
        local, remote, kept, accept = self.local, self.remote, self.kept, self.accept
        if local is not None and remote is not None and kept:
            source = _kept_then_remote(local, remote, kept, end)
        else:
            source = self.inner.entries(end)
        for entry in source:
            yield entry
            accept(entry)  # the verifier asked for the next one: this one passed


def _kept_then_remote(local: Callable[[int], Iterator[StoredEntry]],
                      remote: Callable[[int, int], Iterator[StoredEntry]],
                      kept: int, end: int) -> Iterator[StoredEntry]:
    """Server mode: the entries kept in the local index, then those fetched after them."""
    yield from local(min(kept, end))
    if end > kept:
        yield from remote(kept, end)


class Loader:
    """Runs one load in a thread; `status` is read by the web threads."""

    def __init__(self, settings: Settings, make_source: Callable[[], tuple[LogSource, list[NoteVerifier], str]], *,
                 remote: Callable[[int, int], Iterator[StoredEntry]] | None = None) -> None:
        self.settings = settings
        self.make_source = make_source
        self.remote = remote
        self.status = Status()
        self.thread = threading.Thread(target=self.run, name="console-loader", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def run(self) -> None:
        try:
            self._run()
        except Exception as e:  # the page must say why, whatever it was
            self.status.badge = self._failed(str(e) or type(e).__name__, None)
            self.status.phase = "failed"
            raise

    def _failed(self, reason: str, mismatch: LogMismatch | None) -> dict[str, Any]:
        badge: dict[str, Any] = {"ok": False, "checked_at": _now(), "reason": reason}
        if mismatch is not None:
            badge |= {"first_bad_index": mismatch.index, "last_bad_index": mismatch.last}
        return badge

    def _run(self) -> None:
        settings, status = self.settings, self.status
        source, verifiers, origin = self.make_source()
        status.origin = origin
        state = TrustState.load(settings.state_path) if settings.state_path.exists() else None
        if state is not None and not verifiers:
            verifiers = [NoteVerifier.from_vkey(state.key)]
        if not verifiers:
            raise VerificationError("no trusted checkpoint key: pass --key (the operators print it with "
                                    "`exchange audit key`)")
        indexer = Indexer(settings.index_path)
        kept = 0
        if self.remote is not None and indexer.reusable(origin):
            kept = indexer.resume()
        elif indexer.size or indexer.meta("size"):
            indexer.close()
            settings.index_path.unlink()
            indexer = Indexer(settings.index_path)
        indexer.set_meta({"origin": origin, "complete": "0", "layout": LAYOUT})
        analyzer = Analyzer(settings.rules)

        loads, feed, add = orjson.loads, analyzer.feed, indexer.add

        def accept(stored: StoredEntry) -> None:
            members = loads(stored.leaf)
            ts = parse_time(members["time"])
            feed(stored.index, ts, members)
            # a stored leaf hash the verifier accepted equals the leaf's hash: it need not be computed again
            add(stored.index, stored.leaf, members, ts, store=stored.index >= kept, leaf_hash=stored.stored_leaf_hash)

        tee = _Tee(source, accept, local=indexer.kept_entries, remote=self.remote, kept=kept)

        def progress(done: int, total: int) -> None:
            status.phase, status.done, status.total = "verifying", done, total

        try:
            verified = verify_log(tee, verifiers=verifiers, origin=origin, state=state, progress=progress)
        except LogMismatch as e:
            status.badge = self._failed(f"first bad index {e.index}"
                                        + (f" (somewhere in {e.index}..{e.last})" if e.last != e.index else "")
                                        + f": {e.reason}", e)
            status.badge["source"] = source.description
            status.phase = "failed"
            indexer.finish(analyzer.heat, analyzer.finish())
            indexer.close()
            return
        except (InvalidCheckpoint, VerificationError) as e:
            status.badge = self._failed(str(e), None) | {"source": source.description}
            status.phase = "failed"
            indexer.close()
            return
        status.phase = "indexing"
        checkpoint = verified.checkpoint
        if indexer.frontier.root() != checkpoint.root or indexer.size != checkpoint.size:
            raise VerificationError("the index does not hold the entries that were verified")  # fail closed
        flags = analyzer.finish()
        indexer.finish(analyzer.heat, flags)
        key = next(v for v in verifiers if v.name == checkpoint.checkpoint.origin
                   and _signed_by(checkpoint.note, v, origin))
        witnesses = [WitnessKey.from_vkey(w) for w in settings.witnesses]
        indexer.set_meta({"complete": "1", "checkpoint": checkpoint.note, "key": key.vkey})
        indexer.close()
        previous = verified.previous
        status.badge = {
            "ok": True,
            "checked_at": _now(),
            "source": source.description,
            "origin": checkpoint.checkpoint.origin,
            "size": checkpoint.size,
            "root": checkpoint.checkpoint.text().splitlines()[2],
            "checkpoint": checkpoint.note,
            "key": key.vkey,
            "checks": [
                f"the checkpoint's signature verifies with the trusted key {key.vkey}, and it is a checkpoint of "
                f"{checkpoint.checkpoint.origin}",
                f"every one of the {checkpoint.size} entries, in order: held at its own index, saying it is that "
                "entry, equal to the leaf hashed into the tree when it was appended (where the source keeps it)",
                f"the Merkle root recomputed over all {checkpoint.size} entries equals the signed root",
                ("first use: no earlier state; this checkpoint and key are trusted from now on"
                 if previous is None else
                 f"consistent with the {previous.size} entries verified on {previous.verified_at} (the root at that "
                 "size recomputed and compared)"),
            ] + ([f"{kept} entries re-verified from the local index, {checkpoint.size - kept} fetched"]
                 if kept else []),
            "consistency": None if previous is None else {"size": previous.size, "verified_at": previous.verified_at},
            "cosignatures": cosignatures(checkpoint.note, log_key_name=key.name, log_key_id=key.key_id,
                                         witnesses=witnesses),
            "uncovered": verified.uncovered,
            "flags": len(flags),
        }
        if settings.keep_state:
            verified.state(key).save(settings.state_path)
        status.done = status.total = checkpoint.size
        status.phase = "done"


def _signed_by(note: str, verifier: NoteVerifier, origin: str) -> bool:
    try:
        verify_checkpoint(note, [verifier], origin=origin)
    except InvalidCheckpoint:
        return False
    return True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---- sources ------------------------------------------------------------------------------------------------------


def export_source(path: Path, keys: tuple[str, ...]) -> Callable[[], tuple[LogSource, list[NoteVerifier], str]]:
    def make() -> tuple[LogSource, list[NoteVerifier], str]:
        source = ExportSource(path)
        verifiers = [NoteVerifier.from_vkey(k) for k in keys]
        origin = verifiers[0].name if verifiers else source.checkpoint().split("\n", 1)[0]
        return source, verifiers, origin
    return make
