"""Check that the exchange recorded one's own call, and that its log only ever grows.

Every `/v1/` response names its audit entry in `Audit-Index` and `Audit-Leaf-Hash` (b64). `check_entry` fetches the
latest signed checkpoint, the inclusion proof of that entry in it and, if a checkpoint was kept from before, the
consistency proof between the two, verifies all three, and returns the new checkpoint to keep for next time.

The audit endpoints need scope `audit:read` (purpose `oversight`); the HTTP client passed in carries the caller's
credentials (an `httpx.Auth` that adds the token and DPoP proof, or headers set on the client).
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from exchange.protocol.audit_errors import VerificationError
from exchange.protocol.checkpoint import NoteVerifier, SignedCheckpoint, verify_checkpoint
from exchange.protocol.encoding import b64url_decode
from exchange.protocol.merkle import ConsistencyProof, InclusionProof, verify_consistency, verify_inclusion

INDEX_HEADER = "Audit-Index"  # the one place the audit receipt headers are named (server and partner)
LEAF_HASH_HEADER = "Audit-Leaf-Hash"


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
