"""Check that the exchange recorded one's own call, and that its log only ever grows.

Every `/v1/` response names its audit entry in `Audit-Index` and `Audit-Leaf-Hash` (b64). `check_entry` fetches the
latest signed checkpoint, the inclusion proof of that entry in it and, if a checkpoint was kept from before, the
consistency proof between the two, verifies all three, and returns the new checkpoint to keep for next time.

The audit endpoints need scope `audit:read` (purpose `oversight`); the HTTP client passed in carries the caller's
credentials (an `httpx.Auth` that adds the token and DPoP proof, or headers set on the client).
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nacl.exceptions
import nacl.signing

from exchange.protocol.audit_errors import VerificationError
from exchange.protocol.checkpoint import NoteVerifier, SignedCheckpoint, verify_checkpoint
from exchange.protocol.encoding import b64url, b64url_decode
from exchange.protocol.merkle import ConsistencyProof, InclusionProof, verify_consistency, verify_inclusion

INDEX_HEADER = "Audit-Index"  # the one place the audit receipt headers are named (server and partner)
LEAF_HASH_HEADER = "Audit-Leaf-Hash"
TIME_HEADER = "Audit-Time"  # witness.md §2: the signed receipt's other members
LOG_HEADER = "Audit-Log"
SIGNATURE_HEADER = "Audit-Signature"
RECEIPT_CONTEXT = b"exchange-receipt/v1\x00"


def _b64d(text: str) -> bytes:
    try:
        return b64url_decode(text)
    except (binascii.Error, ValueError) as e:
        raise VerificationError("not base64url") from e


@dataclass(frozen=True, kw_only=True)
class EntryReceipt:
    """The audit entry a response said it was recorded as."""

    index: int
    leaf_hash: bytes

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> EntryReceipt:
        try:
            return cls(index=int(headers[INDEX_HEADER]), leaf_hash=_b64d(headers[LEAF_HASH_HEADER]))
        except (KeyError, ValueError) as e:
            raise VerificationError("the response names no audit entry") from e


def receipt_message(*, index: int, leaf_hash: bytes, log: str, time: int) -> bytes:
    """What the exchange signs (witness.md §2): the context string, then the RFC 8785 encoding of the four members.
    For two integers and two ASCII-safe strings RFC 8785 is Python's JSON encoder with sorted keys, no whitespace and
    no ASCII escaping (the same rule `exchange.audit.entries.encode_entry` relies on)."""
    if type(index) is not int or type(time) is not int or not 0 <= index <= 2**53 - 1 or not 0 <= time <= 2**53 - 1:
        raise ValueError("index and time are integers within RFC 8785's range")
    members = {"index": index, "leaf_hash": b64url(leaf_hash), "log": log, "time": time}
    return RECEIPT_CONTEXT + json.dumps(members, sort_keys=True, separators=(",", ":"),
                                        ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, kw_only=True)
class SignedReceipt:
    """The log's signed promise that the entry `leaf_hash` sits at `index` of the log `log`, integrated at `time`
    (Unix seconds). A later checkpoint of that log whose tree does not hold that leaf at that index contradicts it:
    with the receipt and that checkpoint, anyone can show a third party that the log was rewritten."""

    index: int
    leaf_hash: bytes
    time: int
    log: str
    sig: bytes = field(repr=False)

    def message(self) -> bytes:
        return receipt_message(index=self.index, leaf_hash=self.leaf_hash, log=self.log, time=self.time)

    @classmethod
    def sign(cls, *, index: int, leaf_hash: bytes, time: int, log: str,
             sign: Callable[[bytes], bytes]) -> SignedReceipt:
        signature = sign(receipt_message(index=index, leaf_hash=leaf_hash, log=log, time=time))
        return cls(index=index, leaf_hash=leaf_hash, time=time, log=log, sig=signature)

    def verify(self, public_keys: Iterable[bytes], *, log: str | None = None) -> SignedReceipt:
        """Return the receipt once its signature verifies with one of the exchange's `audit` keys (and it is of the
        log `log`, if given); raise `VerificationError` otherwise."""
        keys = list(public_keys)
        if not keys:
            raise VerificationError("no trusted audit key to verify the receipt with")  # refuse an empty trust set
        if log is not None and self.log != log:
            raise VerificationError(f"the receipt is of the log {self.log!r}, not {log!r}")
        message = self.message()
        for key in keys:
            try:
                nacl.signing.VerifyKey(key).verify(message, self.sig)
            except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
                continue
            return self
        raise VerificationError(f"the receipt of entry {self.index} is not signed by a trusted audit key")

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "leaf_hash": b64url(self.leaf_hash), "log": self.log, "time": self.time,
                "sig": b64url(self.sig)}

    @classmethod
    def from_json(cls, obj: Any) -> SignedReceipt:
        if (not isinstance(obj, dict) or not {"index", "leaf_hash", "log", "time", "sig"} <= obj.keys()
                or type(obj["index"]) is not int or type(obj["time"]) is not int
                or not all(isinstance(obj[k], str) for k in ("leaf_hash", "log", "sig"))):
            raise VerificationError("a receipt is {index, leaf_hash, log, time, sig}")
        return cls(index=obj["index"], leaf_hash=_b64d(obj["leaf_hash"]), log=obj["log"], time=obj["time"],
                   sig=_b64d(obj["sig"]))

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> SignedReceipt:
        try:
            return cls(index=int(headers[INDEX_HEADER]), leaf_hash=_b64d(headers[LEAF_HASH_HEADER]),
                       time=int(headers[TIME_HEADER]), log=headers[LOG_HEADER], sig=_b64d(headers[SIGNATURE_HEADER]))
        except (KeyError, ValueError) as e:
            raise VerificationError("the response carries no signed audit receipt") from e

    def headers(self) -> dict[str, str]:
        return {INDEX_HEADER: str(self.index), LEAF_HASH_HEADER: b64url(self.leaf_hash), TIME_HEADER: str(self.time),
                LOG_HEADER: self.log, SIGNATURE_HEADER: b64url(self.sig)}


def _get(http: httpx.Client, base_url: str, path: str, auth: httpx.Auth | None, **params: int) -> httpx.Response:
    response = http.get(base_url.rstrip("/") + path, params=params,
                        auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT)
    if response.status_code != 200:
        code = response.json().get("code") if response.headers.get("content-type", "").startswith(
            "application/json") else None
        raise VerificationError(f"GET {path} answered {response.status_code} {code or ''}".rstrip())
    return response


def _hashes(body: dict[str, Any]) -> tuple[bytes, ...]:
    return tuple(_b64d(h) for h in body["hashes"])


def verify_receipt(
    *,
    note: str,
    verifiers: Sequence[NoteVerifier],
    origin: str,
    index: int,
    leaf_hash: bytes,
    inclusion: Sequence[bytes],
    kept: SignedCheckpoint | None = None,
    consistency: Sequence[bytes] | None = None,
) -> SignedCheckpoint:
    """Return the checkpoint `note` once it is verified to be signed by a trusted key of the log `origin`, to extend
    `kept` (with the `consistency` proof) and to include the entry `index` with `leaf_hash` (with the `inclusion`
    proof); raise `VerificationError` (`InvalidCheckpoint`, `InvalidProof`) otherwise. Offline: no I/O."""
    # 1. The checkpoint, signed by a trusted audit key, of the expected log.
    latest = verify_checkpoint(note, verifiers, origin=origin)
    # 2. The log only grows: the new checkpoint extends the one kept (RFC 9162 §2.1.4.2).
    if kept is not None:
        if kept.checkpoint.origin != latest.checkpoint.origin:
            raise VerificationError(f"the kept checkpoint is of another log ({kept.checkpoint.origin!r})")
        if latest.size < kept.size:
            raise VerificationError(f"the log shrank from {kept.size} to {latest.size} entries")
        if consistency is None:
            raise VerificationError(f"no consistency proof from the kept checkpoint of size {kept.size}")
        verify_consistency(ConsistencyProof(old=kept.size, new=latest.size, hashes=tuple(consistency)),
                           old_root=kept.root, new_root=latest.root)
    # 3. The entry is in it (RFC 9162 §2.1.3.2).
    if index >= latest.size:
        raise VerificationError(f"entry {index} is not in the latest checkpoint yet ({latest.size})")
    verify_inclusion(InclusionProof(index=index, size=latest.size, hashes=tuple(inclusion)),
                     leaf_hash=leaf_hash, root=latest.root)
    return latest


def check_entry(
    http: httpx.Client,
    base_url: str,
    receipt: EntryReceipt,
    *,
    verifiers: Sequence[NoteVerifier],
    origin: str,
    kept: SignedCheckpoint | None = None,
    auth: httpx.Auth | None = None,
) -> SignedCheckpoint:
    """Fetch the latest checkpoint and the proofs from the auditors' endpoints, then `verify_receipt`."""
    note = _get(http, base_url, "/v1/audit/checkpoint", auth).text
    size = verify_checkpoint(note, verifiers, origin=origin).size
    consistency = None
    if kept is not None and kept.size <= size:
        consistency = _hashes(_get(http, base_url, "/v1/audit/proofs/consistency", auth, old=kept.size,
                                   new=size).json())
    inclusion: tuple[bytes, ...] = ()
    if receipt.index < size:
        inclusion = _hashes(_get(http, base_url, "/v1/audit/proofs/inclusion", auth, index=receipt.index,
                                 size=size).json())
    return verify_receipt(note=note, verifiers=verifiers, origin=origin, index=receipt.index,
                          leaf_hash=receipt.leaf_hash, inclusion=inclusion, kept=kept, consistency=consistency)


# ---- kept receipts: one JSON file each, in a folder the integrator chooses ---------------------------------------

RECEIPT_SUFFIX = ".receipt.json"


def receipt_file_name(receipt: SignedReceipt) -> str:
    """`<index>-<first 8 bytes of the leaf hash, hex>.receipt.json`: one file per entry, sorted by index."""
    return f"{receipt.index:012d}-{receipt.leaf_hash[:8].hex()}{RECEIPT_SUFFIX}"


def read_receipts(folder: str | Path) -> list[tuple[Path, SignedReceipt]]:
    """Every receipt kept in `folder` (files ending in `.receipt.json`), by index; raise `VerificationError`
    naming a file that is not a receipt."""
    found = []
    for path in sorted(Path(folder).glob(f"*{RECEIPT_SUFFIX}")):
        try:
            found.append((path, SignedReceipt.from_json(json.loads(path.read_text(encoding="utf-8")))))
        except (OSError, ValueError) as e:
            raise VerificationError(f"{path.name} is not a readable receipt") from e
    return sorted(found, key=lambda item: (item[1].index, item[0].name))
