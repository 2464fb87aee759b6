"""Offline verification of the whole log (audit.md "Verifying offline").

`verify_log(source, ...)` reads the latest checkpoint and every entry from a *source* (an export file, or the
database directly; an HTTP source follows once partner tokens can be used from the command line) and returns the
verified checkpoint, or raises naming the first bad index:

1. The checkpoint's signature verifies with a trusted `audit` key, and it is a checkpoint of the expected origin.
2. It is not smaller than the checkpoint verified last time (trust on first use: `TrustState`).
3. Every entry in order: stored at its position, saying it is that entry (its `index` member), and equal to the
   leaf hash written into the tree when it was appended (where the source has it). These pin down the first bad
   index of any single changed, deleted, inserted or reordered row.
4. The Merkle root recomputed over the entries equals the root signed at the last verified size (consistency with
   the previous run: a recomputation, stronger than a consistency proof) and at the checkpoint's size. Where only
   the roots disagree (a stretch rewritten together with its stored hashes), the signed checkpoints the source holds
   narrow the first bad index down to the entries between two of them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import rfc8785
from sqlalchemy.orm import Session

from exchange.audit.entries import ENTRY_MEMBERS, ENTRY_VERSION
from exchange.audit.services import EXPORT_FORMAT, AuditLog, StoredEntry
from exchange.files import atomic_write
from exchange.protocol import merkle
from exchange.protocol.audit_errors import InvalidCheckpoint, LogMismatch, VerificationError
from exchange.protocol.checkpoint import NoteVerifier, SignedCheckpoint, b64std, verify_checkpoint
from exchange.protocol.cosignature import Cosignature, WitnessPolicy, verify_witnessed
from exchange.protocol.encoding import b64url_decode_strict
from exchange.protocol.receipts import SignedReceipt

DEFAULT_STATE = Path("~/.config/exchange/audit-state.json")

# The entry's own `index` member. In RFC 8785 output an unescaped `"index":` can only be a member name, and the only
# member ordered before it that holds an object (`envelope`) has no `index`: the first match is the entry's. It
# locates a moved entry; integrity itself rests on the root.
_INDEX = re.compile(rb'"index":(0|[1-9][0-9]*)[,}]')
# The compact line the exchange writes, read without a JSON parser (the decoder checks the base64url text: canonical,
# nothing outside the alphabet); any other line goes through the JSON parser.
_EXPORT_LINE = re.compile(rb'\{"index":(\d+),"leaf":"([^"]*)","leaf_hash":(?:"([^"]*)"|null)\}\n?')


# An entry as a source holds it: `index` is where (a row's key, a line's `index`), `stored_leaf_hash` the tree's
# level-0 node where the source has one.
SourceEntry = StoredEntry


class LogSource(Protocol):
    """Where the verifier reads a log from."""

    description: str

    def checkpoint(self) -> str:
        """The latest signed checkpoint note."""
        ...

    def entries(self, end: int) -> Iterator[SourceEntry]:
        """Every entry held below index `end`, in the source's order, as it is (gaps, duplicates and all)."""
        ...

    def checkpoint_sizes(self) -> list[int]:
        """Sizes of the other checkpoints the source holds (to narrow a mismatch down); may be empty."""
        ...

    def checkpoint_note(self, size: int) -> str | None: ...

    def uncovered(self) -> int | None:
        """Entries appended after the latest checkpoint, if the source knows."""
        ...


class ExportSource:
    """A JSON Lines export (`exchange audit export`, `GET /v1/audit/export`) covering [0, checkpoint size)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"export {path}"
        with path.open(encoding="utf-8") as f:
            first = f.readline()
        try:
            header = json.loads(first)
        except json.JSONDecodeError as e:
            raise VerificationError(f"{path} is not an audit export (no header line)") from e
        if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
            raise VerificationError(f"{path} is not an audit export of format {EXPORT_FORMAT}")
        if header.get("start") != 0:
            raise VerificationError("a partial export (start > 0) cannot be verified on its own; export from 0")
        self.header: dict[str, Any] = header

    def checkpoint(self) -> str:
        note = self.header.get("checkpoint")
        if not isinstance(note, str):
            raise InvalidCheckpoint("the export's header carries no checkpoint")
        return note

    def entries(self, end: int) -> Iterator[SourceEntry]:
        with self.path.open("rb") as f:
            f.readline()
            for position, line in enumerate(f):
                entry = _export_entry(line, position)
                if entry.index >= end:
                    return
                yield entry

    def checkpoint_sizes(self) -> list[int]:
        return []

    def checkpoint_note(self, size: int) -> str | None:
        return None

    def uncovered(self) -> int | None:
        return None


def _export_entry(line: bytes, position: int) -> SourceEntry:
    match = _EXPORT_LINE.fullmatch(line)
    if match:  # the compact form the exchange writes: no JSON parser needed
        stored = match[3]
        try:
            return SourceEntry(int(match[1]), b64url_decode_strict(match[2]),
                               b64url_decode_strict(stored) if stored else None)
        except ValueError:
            pass  # a JSON escape, or not base64url: the JSON parser below decides
    try:
        data = json.loads(line)
        index, leaf, stored_text = data["index"], data["leaf"], data.get("leaf_hash")
        if not isinstance(index, int) or not isinstance(leaf, str) or not isinstance(stored_text, str | None):
            raise TypeError("index, leaf or leaf_hash of the wrong type")
        return SourceEntry(index, b64url_decode_strict(leaf),
                           b64url_decode_strict(stored_text) if stored_text else None)
    except (ValueError, KeyError, TypeError, binascii.Error) as e:
        raise LogMismatch(position, f"line {position + 2} of the export is not an entry") from e


class DatabaseSource:
    """The configured exchange's own database (for its operators and for auditors with database access)."""

    def __init__(self, session: Session, *, description: str = "database", batch: int = 10_000,
                 cosignatures: int = 0) -> None:
        self.session = session
        self.log = AuditLog(session=session)
        self.description = description
        self.batch = batch
        self.cosignatures = cosignatures  # the newest checkpoint with this many cosignatures, if there is one

    def checkpoint(self) -> str:
        latest = (self.cosignatures and self.log.latest_witnessed(self.cosignatures)) or self.log.latest_checkpoint()
        if latest is None:
            raise InvalidCheckpoint("no checkpoint has been published yet (run `exchange audit checkpoint`)")
        return self.log.witnessed_note(latest)

    def entries(self, end: int) -> Iterator[SourceEntry]:
        for stored in self.log.iter_entries(0, end, batch=self.batch):
            raw: object = stored.leaf  # a row edited by hand may hold text where bytes belong: compare its bytes
            yield stored if isinstance(raw, bytes) else dataclasses.replace(stored, leaf=str(raw).encode("utf-8"))

    def checkpoint_sizes(self) -> list[int]:
        return self.log.checkpoint_sizes()

    def checkpoint_note(self, size: int) -> str | None:
        return self.log.checkpoint_note(size)

    def uncovered(self) -> int | None:
        latest = self.log.latest_checkpoint()
        return self.log.size() - (latest.size if latest else 0)


# ---- trust on first use -------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TrustState:
    """What the last successful run verified: the next run must find a log that extends it."""

    origin: str
    size: int
    root: bytes
    checkpoint: str
    key: str  # the C2SP verifier key trusted for this log
    verified_at: str

    @classmethod
    def load(cls, path: Path) -> TrustState | None:
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(origin=data["origin"], size=int(data["size"]), root=base64.b64decode(data["root"]),
                       checkpoint=data["checkpoint"], key=data["key"], verified_at=data["verified_at"])
        except (ValueError, KeyError, TypeError, binascii.Error) as e:
            raise VerificationError(f"the state file {path} is unreadable; move it away to start over") from e

    def save(self, path: Path) -> None:
        """Atomically (temp file, fsync, rename, fsync of the folder), mode 0600: it survives a crash."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        payload = json.dumps({"origin": self.origin, "size": self.size, "root": b64std(self.root),
                              "checkpoint": self.checkpoint, "key": self.key, "verified_at": self.verified_at},
                             indent=2).encode("utf-8")
        atomic_write(path, payload, prefix=".audit-state-")


@dataclass(frozen=True, kw_only=True)
class KeptReceipt:
    """A receipt kept by a party the log promised an entry to (witness.md §2), and where it was kept."""

    name: str  # the file it was read from
    receipt: SignedReceipt


class ReceiptContradicted(VerificationError):
    """Receipts signed by the log that the log no longer holds: each is proof, to anyone, of a rewrite."""

    def __init__(self, contradicted: list[tuple[KeptReceipt, str]]) -> None:
        self.contradicted = contradicted
        names = "; ".join(f"{kept.name} (entry {kept.receipt.index}): {why}" for kept, why in contradicted)
        super().__init__(f"{len(contradicted)} receipt(s) the log contradicts: {names}")


@dataclass(frozen=True, kw_only=True)
class VerifiedLog:
    checkpoint: SignedCheckpoint
    previous: TrustState | None
    uncovered: int | None
    cosignatures: tuple[Cosignature, ...] = ()
    receipts_checked: int = 0
    receipts_pending: int = 0

    def state(self, key: NoteVerifier) -> TrustState:
        return TrustState(origin=self.checkpoint.checkpoint.origin, size=self.checkpoint.size,
                          root=self.checkpoint.root, checkpoint=self.checkpoint.note, key=key.vkey,
                          verified_at=datetime.now(UTC).isoformat(timespec="seconds"))


# ---- the verifier -------------------------------------------------------------------------------------------------


def _check_strictly(index: int, leaf: bytes) -> None:
    """The entry is an RFC 8785 JSON object with exactly the audit.md members, version 1, and its own index."""
    try:
        entry = json.loads(leaf)
    except (ValueError, UnicodeDecodeError) as e:
        raise LogMismatch(index, "the entry is not JSON") from e
    if not isinstance(entry, dict) or set(entry) != ENTRY_MEMBERS:
        raise LogMismatch(index, "the entry does not have exactly the members of audit.md")
    if entry["v"] != ENTRY_VERSION or entry["index"] != index:
        raise LogMismatch(index, "the entry has the wrong version or index")
    if rfc8785.dumps(entry) != leaf:
        raise LogMismatch(index, "the entry is not in canonical RFC 8785 form")


def verify_log(
    source: LogSource,
    *,
    verifiers: Sequence[NoteVerifier],
    origin: str,
    state: TrustState | None = None,
    progress: Callable[[int, int], None] | None = None,
    strict: bool = False,
    witnesses: WitnessPolicy | None = None,
    receipts: Sequence[KeptReceipt] = (),
) -> VerifiedLog:
    """Verify the whole log held by `source`; return what was verified or raise a `VerificationError`.

    With `witnesses`, the checkpoint must also carry the verifier's own quorum of cosignatures (witness.md §4); with
    `receipts`, every kept receipt must be signed by a trusted key and its leaf be the log's at its index
    (`ReceiptContradicted` names those that are not)."""
    # 1. The latest checkpoint: a trusted key's signature over a checkpoint of this log (and the quorum, if any).
    note = source.checkpoint()
    if witnesses is not None:
        signed, cosigned = verify_witnessed(note, verifiers, origin=origin, policy=witnesses)
    else:
        signed, cosigned = verify_checkpoint(note, verifiers, origin=origin), []
    # 1b. Kept receipts: signed by the log's key, of this log; then each is compared with the entry at its index.
    promised: dict[int, list[KeptReceipt]] = {}
    contradicted: list[tuple[KeptReceipt, str]] = []
    keys = [v.public_key for v in verifiers if v.name == origin]
    for kept in receipts:
        try:
            kept.receipt.verify(keys, log=origin)
        except VerificationError as e:
            contradicted.append((kept, str(e)))
            continue
        promised.setdefault(kept.receipt.index, []).append(kept)
    size = signed.size
    # 2. Never behind what was verified before.
    if state is not None:
        if state.origin != origin:
            raise VerificationError(f"the state file is for {state.origin!r}, not {origin!r}")
        if size < state.size:
            raise LogMismatch(size, f"the log shrank: its checkpoint covers {size} entries, {state.size} were "
                                    f"verified on {state.verified_at}", last=state.size - 1)
    anchors = {size: signed.root}
    if state is not None and state.size > 0:
        anchors[state.size] = state.root
    others = {s for s in source.checkpoint_sizes() if 0 < s < size}
    watch = others | anchors.keys()
    computed: dict[int, bytes] = {}
    if progress is not None:
        progress(0, size)
    # 3. Every entry, in order.
    frontier = merkle.Frontier()
    count = 0
    for entry in source.entries(size):
        if count == size:
            break
        if entry.index != count:
            raise LogMismatch(count, f"entry {count} is missing (the next one held is entry {entry.index})"
                              if entry.index > count else f"entry {entry.index} is held again at position {count}")
        found = _INDEX.search(entry.leaf)
        claimed = int(found[1]) if found else None
        if claimed != count:
            raise LogMismatch(count, f"the entry held at {count} says it is entry {claimed} (moved or inserted)"
                              if claimed is not None else f"the entry held at {count} is not an audit entry")
        leaf_hash = merkle.leaf_hash(entry.leaf)
        for kept in promised.pop(count, ()):
            if kept.receipt.leaf_hash != leaf_hash:
                contradicted.append((kept, "the log holds another entry at this index"))
        if entry.stored_leaf_hash is not None and entry.stored_leaf_hash != leaf_hash:
            raise LogMismatch(count, "the entry differs from the one hashed into the tree when it was appended")
        if strict:
            _check_strictly(count, entry.leaf)
        frontier.push(leaf_hash)
        count += 1
        if count in watch:
            computed[count] = frontier.root()
        if progress is not None and not count & 0xFFF:
            progress(count, size)
    if count < size:
        raise LogMismatch(count, f"entries {count}..{size - 1} are missing: the checkpoint covers {size}",
                          last=size - 1)
    if progress is not None:
        progress(size, size)
    # 4. The recomputed roots: at the previously verified size (consistency), then at the checkpoint's.
    bad = sorted(s for s, root in anchors.items() if computed.get(s, merkle.EMPTY_ROOT) != root)
    if bad:
        _locate(source, verifiers, origin, computed, others, anchors, first_bad=bad[0], state=state)
    # 5. Receipts the log contradicts (a rewritten entry the roots cannot show: the tree was recomputed too).
    if contradicted:
        raise ReceiptContradicted(contradicted)
    pending = sum(len(v) for v in promised.values())  # entries past the checkpoint: checked next time
    return VerifiedLog(checkpoint=signed, previous=state, uncovered=source.uncovered(), cosignatures=tuple(cosigned),
                       receipts_checked=len(receipts) - pending, receipts_pending=pending)


def _locate(
    source: LogSource, verifiers: Sequence[NoteVerifier], origin: str, computed: dict[int, bytes],
    others: set[int], anchors: dict[int, bytes], *, first_bad: int, state: TrustState | None,
) -> None:
    """Raise `LogMismatch` for the entries between the last signed root that matches and the first that does not."""
    good = max((s for s in anchors if s < first_bad), default=0)
    for size in sorted(s for s in others if good < s < first_bad):
        note = source.checkpoint_note(size)
        try:
            signed = verify_checkpoint(note or "", verifiers, origin=origin)
        except InvalidCheckpoint:
            continue  # an unverifiable checkpoint proves nothing either way
        if signed.size != size:
            continue
        if computed[size] == signed.root:
            good = size
        else:
            first_bad = size
            break
    what = ("the checkpoint verified before" if state is not None and first_bad == state.size
            else "the signed checkpoint")
    raise LogMismatch(good, f"the entries do not add up to the root of {what} at size {first_bad}; those before "
                            f"{good} do", last=first_bad - 1)
