"""The entry format (audit.md "Entry"): an event's members, their encoding (RFC 8785), and the queued leaf whose
`index` and `prev_checkpoint_size` the sequencer fills in (`exchange.audit.sequencing`)."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ENTRY_VERSION = 1
# The members of an entry, exactly (audit.md "Entry"); every entry has all of them, null where not applicable.
ENTRY_MEMBERS = frozenset({
    "v", "index", "time", "request_id", "action", "outcome", "status", "reason", "agency", "client_id", "officer",
    "purpose", "case_ref", "method", "path", "record_ids", "recipient", "source_ip", "token_jti", "dpop_jti",
    "envelope", "prev_checkpoint_size",
})
ACTIONS = frozenset({"collect", "alter", "consult", "disclose", "erase", "token.issue", "token.deny", "audit.read",
                     "deny"})
ACTION_FAMILIES = ("client.", "key.")  # client.register, key.rotate, ...
OUTCOMES = ("success", "failure")

_ACTION = re.compile(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)?$")


def format_time(moment: datetime) -> str:
    """RFC 3339, UTC, microseconds: 2026-11-25T03:28:14.706092Z."""
    if moment.tzinfo is None:
        raise ValueError("audit times are timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, kw_only=True)
class Envelope:
    """Evidence of an accepted request envelope (protocol.md §4), all b64."""

    msg_id: str
    protected_hash: str
    sig: str
    plaintext_hash: str


def _short(value: str | None, limit: int, name: str) -> None:
    if value is not None and not 0 < len(value) <= limit:
        raise ValueError(f"audit member {name} must be 1..{limit} characters")


@dataclass(frozen=True, kw_only=True)
class Event:
    """What happened, as audit.md lists it; `AuditLog.append` adds the index and `prev_checkpoint_size`."""

    time: datetime
    request_id: str
    action: str
    outcome: str
    status: int
    method: str
    path: str
    reason: str | None = None
    agency: str | None = None
    client_id: str | None = None
    officer: str | None = None
    purpose: str | None = None
    case_ref: str | None = None
    record_ids: tuple[str, ...] = ()
    recipient: str | None = None
    source_ip: str | None = None
    token_jti: str | None = None
    dpop_jti: str | None = None
    envelope: Envelope | None = field(default=None)

    def __post_init__(self) -> None:
        family = any(self.action.startswith(f) and len(self.action) > len(f) for f in ACTION_FAMILIES)
        if not _ACTION.match(self.action) or not (self.action in ACTIONS or family):
            raise ValueError(f"unknown audit action {self.action!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown audit outcome {self.outcome!r}")
        if self.outcome == "failure" and not self.reason:
            raise ValueError("a failure names its reason (the stable error code)")
        if not 100 <= self.status <= 599:
            raise ValueError("status is an HTTP status")
        for name, limit in [("agency", 16), ("client_id", 128), ("purpose", 64), ("action", 32)]:
            _short(getattr(self, name), limit, name)
        if any(not 0 < len(r) <= 64 for r in self.record_ids):
            raise ValueError("record ids are 1..64 characters")
        format_time(self.time)

    def members(self, *, index: int, prev_checkpoint_size: int) -> dict[str, Any]:
        envelope = None
        if self.envelope is not None:
            envelope = {"msg_id": self.envelope.msg_id, "protected_hash": self.envelope.protected_hash,
                        "sig": self.envelope.sig, "plaintext_hash": self.envelope.plaintext_hash}
        return {
            "v": ENTRY_VERSION, "index": index, "time": format_time(self.time), "request_id": self.request_id,
            "action": self.action, "outcome": self.outcome, "status": self.status, "reason": self.reason,
            "agency": self.agency, "client_id": self.client_id, "officer": self.officer, "purpose": self.purpose,
            "case_ref": self.case_ref, "method": self.method, "path": self.path,
            "record_ids": list(dict.fromkeys(self.record_ids)), "recipient": self.recipient,
            "source_ip": self.source_ip, "token_jti": self.token_jti, "dpop_jti": self.dpop_jti,
            "envelope": envelope, "prev_checkpoint_size": prev_checkpoint_size,
        }


def encode_entry(members: Mapping[str, Any]) -> bytes:
    """The leaf: the entry's RFC 8785 (JSON Canonicalization Scheme) encoding.

    For what an entry holds (strings, null, integers within +-(2**53 - 1), arrays of strings, an object of strings,
    member names in ASCII) RFC 8785 is exactly Python's own JSON encoder with sorted keys, no whitespace and no
    ASCII escaping: the same escapes (quote, backslash, b f n r t, and u00xx in lower case for the other control
    characters), everything else as UTF-8, integers in plain decimal, names sorted by code point (UTF-16
    order for ASCII). That encoder is written in C, about six times faster than `rfc8785.dumps`; anything else (a
    float, a big integer, an unexpected type) is refused rather than encoded differently. Tests compare the two.
    """
    if set(members) != ENTRY_MEMBERS:
        raise ValueError("an entry has exactly the members of audit.md")
    for value in members.values():
        kind = type(value)
        if kind is int:
            if not _JS_SAFE >= value >= -_JS_SAFE:
                raise ValueError("an integer beyond RFC 8785's range")
        elif kind is list:
            if any(type(item) is not str for item in value):
                raise ValueError("entry arrays hold strings")
        elif kind is dict:
            if any(type(k) is not str or not k.isascii() or type(v) is not str for k, v in value.items()):
                raise ValueError("entry objects map ASCII names to strings")
        elif value is not None and kind is not str:
            raise ValueError(f"an entry member cannot be a {kind.__name__}")
    return _ENCODER.encode(members).encode("utf-8")  # UnicodeEncodeError (a ValueError) for lone surrogates


_JS_SAFE = 2**53 - 1
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


# The two members only the sequencer knows, as they stand in a queued leaf. RFC 8785 writes the members sorted and
# integers in plain decimal, both are followed by another member ("method", "purpose"), and a `"` inside a string is
# always escaped, so each of these byte strings occurs exactly once in a queued leaf, at the top level.
_INDEX_MARK = b'"index":-1,'
_PREV_MARK = b'"prev_checkpoint_size":-1,'


def queue_leaf(event: Event) -> bytes:
    """The event's leaf with `index` and `prev_checkpoint_size` still open (-1)."""
    leaf = encode_entry(event.members(index=-1, prev_checkpoint_size=-1))
    if leaf.count(_INDEX_MARK) != 1 or leaf.count(_PREV_MARK) != 1:
        raise ValueError("a queued leaf names its index and checkpoint size once")
    return leaf


def fill_leaf(queued: bytes, *, index: int, prev_checkpoint_size: int) -> bytes:
    """The leaf of a queued entry given its index: the RFC 8785 encoding of the same members with the two numbers
    (byte for byte what `encode_entry` makes of them)."""
    before, mark, rest = queued.partition(_INDEX_MARK)
    middle, mark2, after = rest.partition(_PREV_MARK)
    if not mark or not mark2 or index < 0 or prev_checkpoint_size < 0:
        raise ValueError("not a queued leaf")
    return b"".join((before, b'"index":%d,' % index, middle, b'"prev_checkpoint_size":%d,' % prev_checkpoint_size,
                     after))
