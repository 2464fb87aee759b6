"""The signed-and-encrypted envelope of protocol v1 §4: sealing, and opening with the receiver's checks in order.

Wire form (media type `application/vnd.exchange.envelope.v1+json`)::

    {"protected": b64(header_bytes), "ciphertext": b64(SealedBox(rkid's X25519 key).encrypt(sig || plaintext))}
    sig = Ed25519_skid(b"exchange-envelope/v1\\x00" || header_bytes || b"\\x00" || SHA-256(plaintext))

b64 is base64url without padding, and only the canonical encoding is accepted (no padding, no characters outside the
alphabet, unused trailing bits zero), so that one envelope has exactly one serialisation of each part.

`open_envelope` runs the receiver's checks in the order of protocol.md §4; the first failure raises its
`EnvelopeError` (statuses and codes: `exchange.protocol.envelope_errors`). Where the spec leaves a choice:

- Step 1 covers the body (size first, so an oversized body is never parsed; then UTF-8, JSON without duplicate
  members, exactly `protected` and `ciphertext`, canonical b64) and the syntax of the header (a UTF-8 JSON object of at
  most 16 KiB without duplicate members, carrying `v` and `suite`). Step 2 then checks `v`, `suite` and `ctype`
  (`envelope_unsupported`); only once the version is known can the header's members be checked against version 1:
  a missing, unknown or ill-typed member is `envelope_malformed`, reported after step 2.
- Step 4 also rejects a header whose own window is invalid (not `iat < exp <= iat + 300`). `exp` is exclusive.
- Step 5 also rejects a response envelope presented as a request. For a response (`open_response`) it also checks
  `reply_to` and `request_hash` against the client's request (`envelope_reply_mismatch`): they belong with method
  and target to "is this envelope about this exchange of messages", and are cheap header checks done before any
  cryptography.
- Step 6 with no authenticated agency (`None`) fails: nobody authenticated means nobody may be the sender.
- Step 7 also rejects a decrypted content too short to hold a signature.
- Step 10 records (`envelope:<sender>`, `msg_id`) until `exp` + 60 s (clock differences between workers), and only
  after steps 1-9 passed: a rejected envelope never consumes its msg_id.
- Step 11 checks only "is one JSON value" (UTF-8, no duplicate member names, no NaN/Infinity); the schema is the
  caller's.

Nothing here logs, and no exception message carries plaintext, key material or ciphertext. Library exceptions are
wrapped at this boundary. An empty set of decryption keys is refused (`ValueError`: a configuration error, not the
caller's).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Protocol, TypeVar

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing

from exchange.protocol.auth_errors import Replayed
from exchange.protocol.clock import FUTURE_SKEW
from exchange.protocol.encoding import b64url, b64url_decode_strict, okp_thumbprint
from exchange.protocol.envelope_errors import (
    EnvelopeBadSignature,
    EnvelopeExpired,
    EnvelopeMalformed,
    EnvelopeMisdirected,
    EnvelopeNotJson,
    EnvelopeReplayed,
    EnvelopeReplyMismatch,
    EnvelopeSenderMismatch,
    EnvelopeTooLarge,
    EnvelopeUndecryptable,
    EnvelopeUnsupported,
    EnvelopeWrongRecipient,
    KeyRevoked,
    UnknownKey,
)
from exchange.protocol.replay import ReplayCache

MEDIA_TYPE: Final = "application/vnd.exchange.envelope.v1+json"
VERSION: Final = 1
SUITE: Final = "ed25519+x25519-sealedbox"
CTYPE: Final = "application/json"
SIGNATURE_DOMAIN: Final = b"exchange-envelope/v1\x00"
MAX_BODY_BYTES: Final = 1 << 20  # protocol.md §4 step 1 default
MAX_HEADER_BYTES: Final = 16 << 10
MAX_LIFETIME: Final = 300  # exp <= iat + 300
DEFAULT_LIFETIME: Final = 60
REPLAY_MARGIN: Final = 60  # a msg_id is remembered until exp + this (clock differences between workers)
MSG_ID_BYTES: Final = 16  # 128 random bits
MAX_MSG_ID_BYTES: Final = 64
SIGNATURE_BYTES: Final = nacl.bindings.crypto_sign_BYTES  # 64
SEAL_OVERHEAD: Final = nacl.bindings.crypto_box_SEALBYTES  # 48: ephemeral public key and MAC
MAX_TIME: Final = 2**53 - 1  # JSON integers every language reads exactly

_REQUEST_MEMBERS: Final = ("v", "suite", "sender", "skid", "recipient", "rkid", "msg_id", "iat", "exp", "method",
                           "target", "ctype")
_RESPONSE_MEMBERS: Final = ("reply_to", "request_hash", "audit")
_REQUEST_SET: Final = frozenset(_REQUEST_MEMBERS)
_RESPONSE_SET: Final = frozenset(_REQUEST_MEMBERS + _RESPONSE_MEMBERS)
_AUDIT_MEMBERS: Final = frozenset({"index", "leaf_hash"})
_SIGNED_AUDIT_MEMBERS: Final = frozenset({"index", "leaf_hash", "time", "log", "sig"})  # witness.md §2
_BODY_MEMBERS: Final = frozenset({"protected", "ciphertext"})

_PARTY_TEXT: Final = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_METHOD_TEXT: Final = r"[A-Z]{1,16}"
_PARTY = re.compile(_PARTY_TEXT)  # agency ids: `interior`, `exchange`, ...
_METHOD = re.compile(_METHOD_TEXT)
_TARGET = re.compile(r"/[\x21-\x7e]{0,8191}")  # origin-form request target as sent: path and query, ASCII
_REPLY_TO = re.compile(r"[\x21-\x7e]{1,256}")


# --- encoding ---------------------------------------------------------------------------------------------------------

def _b64_sha256(data: bytes) -> str:
    return b64url(hashlib.sha256(data).digest())


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


# One decoder for every call (as `json.loads` keeps its own default one): `json.loads(text, **hooks)` would build a new
# decoder and scanner each time, which costs more than parsing a small header. Decoders hold no per-call state.
_STRICT_DECODER: Final = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)


def parse_json(data: bytes) -> Any:
    """Parse strict JSON (RFC 8259 as UTF-8, no duplicate member names, no NaN/Infinity); raise ValueError.

    Python's own `json.loads(bytes)` would also guess UTF-16/32 and accept duplicates (last wins), which lets two
    parsers read one signed text differently. A leading byte order mark is not JSON whitespace: rejected."""
    try:
        text = data.decode("utf-8")
        return _STRICT_DECODER.decode(text)
    except RecursionError as e:  # deeply nested arrays or objects
        raise ValueError("JSON nested too deeply") from e
    # UnicodeDecodeError and json.JSONDecodeError are ValueErrors (so is int's digit limit), and propagate as such.


def dumps_json(value: Any) -> bytes:
    """Compact UTF-8 JSON, as `seal_json` sends it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


# --- key ids and hashes -----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _kid(crv: str, public: bytes) -> str:
    return okp_thumbprint(crv, b64url(public))


def x25519_kid(public_key: nacl.public.PublicKey) -> str:
    """RFC 7638 thumbprint of the X25519 OKP JWK of `public_key` (an `rkid`)."""
    return _kid("X25519", bytes(public_key))


def ed25519_kid(verify_key: nacl.signing.VerifyKey) -> str:
    """RFC 7638 thumbprint of the Ed25519 OKP JWK of `verify_key` (an `skid`)."""
    return _kid("Ed25519", bytes(verify_key))


def decrypt_keyring(keys: Iterable[nacl.public.PrivateKey]) -> dict[str, nacl.public.PrivateKey]:
    """The `decrypt_keys` mapping of `open_envelope` (rkid -> key) for the receiver's active and retiring keys."""
    ring = {x25519_kid(key.public_key): key for key in keys}
    if not ring:
        raise ValueError("a receiver needs at least one decryption key")
    return ring


def new_msg_id() -> str:
    """128 random bits, b64."""
    return b64url(os.urandom(MSG_ID_BYTES))


def request_hash_of(sealed: SealedEnvelope) -> str:
    """`request_hash` of a response to an enveloped request: b64 SHA-256 of `protected` "." `ciphertext`."""
    return _b64_sha256(f"{sealed.protected}.{sealed.ciphertext}".encode("ascii"))


def request_hash_of_proof(dpop_proof: str) -> str:
    """`request_hash` of a response to a bodiless request: b64 SHA-256 of the DPoP proof as sent."""
    try:
        return _b64_sha256(dpop_proof.encode("ascii"))
    except UnicodeEncodeError as e:
        raise ValueError("a DPoP proof is ASCII") from e


def signing_input(header_bytes: bytes, plaintext_hash: bytes) -> bytes:
    """What `sig` signs: the domain, the header exactly as sent, a NUL, SHA-256(plaintext)."""
    return SIGNATURE_DOMAIN + header_bytes + b"\x00" + plaintext_hash


# --- header -----------------------------------------------------------------------------------------------------------

# `json.dumps(..., ensure_ascii=False)`'s own string encoder, so that `EnvelopeHeader.to_bytes` escapes as it does.
_json_string: Final = json.encoder.encode_basestring
_HEADER_PREFIX: Final = f'{{"v":{VERSION},"suite":{json.dumps(SUITE)},"sender":'
_CTYPE_JSON: Final = json.dumps(CTYPE)

_B64_32_TEXT: Final = r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]"  # 32 bytes: 43 characters, the last 2 bits zero
_B64_32 = re.compile(_B64_32_TEXT)  # thumbprints, hashes
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_CANONICAL_LAST: Final = {0: "", 2: "AQgw", 3: "AEIMQUYcgkosw048"}  # len % 4 -> last characters with zero unused bits


def _b64_size(text: str) -> int:
    """The number of bytes `text` decodes to if `b64url_decode_strict` accepts it (canonical base64url without
    padding), else -1; without decoding it (a test holds the two equal)."""
    rest = len(text) % 4
    if rest == 1 or _B64URL.fullmatch(text) is None or (rest and text[-1] not in _CANONICAL_LAST[rest]):
        return -1
    return len(text) * 3 // 4


def _is_b64_of(text: str, size: int) -> bool:
    if size == 32:
        return _B64_32.fullmatch(text) is not None
    return _b64_size(text) == size


def _require(ok: bool, member: str) -> None:
    if not ok:
        raise ValueError(f"header member {member!r} is not valid")


_TIME_TEXT: Final = r"(0|[1-9][0-9]{0,15})"  # a JSON integer >= 0 of at most 16 digits (2**53 - 1 checked apart)
# A request header as `to_bytes` writes it, every string free of escapes (the target without `"` and `\`).
_CANONICAL_REQUEST: Final = re.compile(
    re.escape(_HEADER_PREFIX) + f'"({_PARTY_TEXT})","skid":"({_B64_32_TEXT})","recipient":"({_PARTY_TEXT})",'
    f'"rkid":"({_B64_32_TEXT})","msg_id":"([A-Za-z0-9_-]{{22,86}})","iat":{_TIME_TEXT},"exp":{_TIME_TEXT},'
    f'"method":"({_METHOD_TEXT})",' + r'"target":"(/[\x21\x23-\x5b\x5d-\x7e]{0,8191})","ctype":'
    + re.escape(_CTYPE_JSON) + "}")


@dataclass(frozen=True, kw_only=True)
class AuditReceipt:
    """`audit` of a response header: the audit entry that recorded the call, and (witness.md §2) the log's signed
    promise of it: `time` (integration time, Unix seconds), `log` (the checkpoint origin) and `sig` (b64 Ed25519 by
    the exchange's `audit` key; `exchange.protocol.receipts.SignedReceipt` verifies it). The three come together or
    not at all: a header of before witness.md (index and leaf hash only) still parses."""

    index: int
    leaf_hash: str  # b64 SHA-256 leaf hash
    time: int | None = None
    log: str | None = None
    sig: str | None = None

    def __post_init__(self) -> None:
        _require(0 <= self.index <= MAX_TIME, "audit")
        _require(_is_b64_of(self.leaf_hash, 32), "audit")
        signed = (self.time, self.log, self.sig)
        if any(member is not None for member in signed):
            _require(self.time is not None and type(self.time) is int and 0 <= self.time <= MAX_TIME, "audit")
            _require(self.log is not None and 0 < len(self.log) <= 256 and self.log.isprintable(), "audit")
            _require(self.sig is not None and _is_b64_of(self.sig, 64), "audit")

    @property
    def is_signed(self) -> bool:
        return self.sig is not None

    def to_dict(self) -> dict[str, Any]:
        members: dict[str, Any] = {"index": self.index, "leaf_hash": self.leaf_hash}
        if self.sig is not None:
            members |= {"time": self.time, "log": self.log, "sig": self.sig}
        return members


@dataclass(frozen=True, init=False)
class EnvelopeHeader:
    """The protected header. `v`, `suite` and `ctype` are fixed for protocol v1. Construction checks each member's
    format (ValueError); the time window is checked by `seal` and by the receiver (step 4)."""

    v: ClassVar[int] = VERSION
    suite: ClassVar[str] = SUITE
    ctype: ClassVar[str] = CTYPE

    sender: str
    skid: str
    recipient: str
    rkid: str
    msg_id: str
    iat: int
    exp: int
    method: str
    target: str
    reply_to: str | None = None
    request_hash: str | None = None
    audit: AuditReceipt | None = None

    def __init__(
        self, *, sender: str, skid: str, recipient: str, rkid: str, msg_id: str, iat: int, exp: int, method: str,
        target: str, reply_to: str | None = None, request_hash: str | None = None, audit: AuditReceipt | None = None,
    ) -> None:
        # The dataclass's own __init__, but the members set in one update: a frozen dataclass's would call
        # object.__setattr__ once per member, which costs as much as all of `__post_init__`'s checks (every seal makes
        # a header). A test holds the members set here to be the dataclass's fields.
        vars(self).update(sender=sender, skid=skid, recipient=recipient, rkid=rkid, msg_id=msg_id, iat=iat, exp=exp,
                          method=method, target=target, reply_to=reply_to, request_hash=request_hash, audit=audit)
        self.__post_init__()

    def __post_init__(self) -> None:
        _require(_PARTY.fullmatch(self.sender) is not None, "sender")
        _require(_is_b64_of(self.skid, 32), "skid")
        _require(_PARTY.fullmatch(self.recipient) is not None, "recipient")
        _require(_is_b64_of(self.rkid, 32), "rkid")
        _require(MSG_ID_BYTES <= _b64_size(self.msg_id) <= MAX_MSG_ID_BYTES, "msg_id")
        _require(0 <= self.iat <= MAX_TIME, "iat")
        _require(0 <= self.exp <= MAX_TIME, "exp")
        _require(_METHOD.fullmatch(self.method) is not None, "method")
        _require(_TARGET.fullmatch(self.target) is not None, "target")
        if self.reply_to is not None or self.request_hash is not None or self.audit is not None:  # a response
            _require(self.reply_to is not None and self.request_hash is not None and self.audit is not None,
                     "reply_to")
            _require(self.reply_to is not None and _REPLY_TO.fullmatch(self.reply_to) is not None, "reply_to")
            _require(self.request_hash is not None and _is_b64_of(self.request_hash, 32), "request_hash")

    @property
    def is_response(self) -> bool:
        return self.reply_to is not None

    @classmethod
    def for_request(
        cls, *, sender: str, skid: str, recipient: str, rkid: str, method: str, target: str,
        now: int | None = None, lifetime: int = DEFAULT_LIFETIME, msg_id: str | None = None,
    ) -> EnvelopeHeader:
        """A request header with a fresh msg_id, iat = now and exp = now + lifetime."""
        iat = int(time.time()) if now is None else now
        return cls(sender=sender, skid=skid, recipient=recipient, rkid=rkid, msg_id=msg_id or new_msg_id(),
                   iat=iat, exp=iat + lifetime, method=method, target=target)

    @classmethod
    def for_response(
        cls, *, sender: str, skid: str, recipient: str, rkid: str, request: RequestRef, audit: AuditReceipt,
        now: int | None = None, lifetime: int = DEFAULT_LIFETIME, msg_id: str | None = None,
    ) -> EnvelopeHeader:
        """A response header answering `request` (its method, target, reply_to and request_hash)."""
        iat = int(time.time()) if now is None else now
        return cls(sender=sender, skid=skid, recipient=recipient, rkid=rkid, msg_id=msg_id or new_msg_id(),
                   iat=iat, exp=iat + lifetime, method=request.method, target=request.target,
                   reply_to=request.reply_to, request_hash=request.request_hash, audit=audit)

    def to_dict(self) -> dict[str, Any]:
        members: dict[str, Any] = {
            "v": self.v, "suite": self.suite, "sender": self.sender, "skid": self.skid, "recipient": self.recipient,
            "rkid": self.rkid, "msg_id": self.msg_id, "iat": self.iat, "exp": self.exp, "method": self.method,
            "target": self.target, "ctype": self.ctype,
        }
        if self.audit is not None:
            members |= {"reply_to": self.reply_to, "request_hash": self.request_hash,
                        "audit": self.audit.to_dict()}
        return members

    def to_bytes(self) -> bytes:
        """Compact UTF-8 JSON, members in the order of protocol.md §4. The receiver verifies these bytes as sent and
        never re-serialises them, so another implementation may order or space its header as it likes.

        Byte for byte `dumps_json(self.to_dict())` (a test holds them equal), written out member by member with the
        JSON encoder's own string escaping: the generic encoder costs more than the rest of a small seal's Python."""
        audit = self.audit
        exact_ints = type(self.iat) is int and type(self.exp) is int and (audit is None or (
            type(audit.index) is int and (audit.time is None or type(audit.time) is int)))
        if not exact_ints:
            return dumps_json(self.to_dict())  # int subclasses (bool): let the encoder decide, as it always did
        s = _json_string
        text = (f'{_HEADER_PREFIX}{s(self.sender)},"skid":{s(self.skid)},"recipient":{s(self.recipient)},'
                f'"rkid":{s(self.rkid)},"msg_id":{s(self.msg_id)},"iat":{self.iat},"exp":{self.exp},'
                f'"method":{s(self.method)},"target":{s(self.target)},"ctype":{_CTYPE_JSON}')
        if audit is not None:
            reply_to, request_hash = self.reply_to, self.request_hash
            if reply_to is None or request_hash is None:  # never: a response header has all three (__post_init__)
                return dumps_json(self.to_dict())
            signed = (f',"time":{audit.time},"log":{s(audit.log)},"sig":{s(audit.sig)}'
                      if audit.log is not None and audit.sig is not None else "")
            text += (f',"reply_to":{s(reply_to)},"request_hash":{s(request_hash)},'
                     f'"audit":{{"index":{audit.index},"leaf_hash":{s(audit.leaf_hash)}{signed}}}')
        return (text + "}").encode("utf-8")

    @classmethod
    def parse(cls, data: bytes) -> EnvelopeHeader:
        """Parse and check a received header: `EnvelopeMalformed` (step 1, and member types after step 2) or
        `EnvelopeUnsupported` (step 2)."""
        # 1. A UTF-8 JSON object without duplicate members that names its version and suite.
        if len(data) > MAX_HEADER_BYTES:
            raise EnvelopeMalformed("The envelope header is too large.")
        header = cls._from_canonical(data)
        if header is not None:
            return header
        try:
            obj = parse_json(data)
        except ValueError as e:
            raise EnvelopeMalformed("The envelope header is not a UTF-8 JSON object.") from e
        if not isinstance(obj, dict):
            raise EnvelopeMalformed("The envelope header is not a JSON object.")
        if "v" not in obj or "suite" not in obj:
            raise EnvelopeMalformed('The envelope header lacks "v" or "suite".')
        # 2. Version, suite and content type known.
        v = obj["v"]
        if type(v) is not int or v != VERSION:
            raise EnvelopeUnsupported("Only envelope version 1 is supported.")
        if obj["suite"] != SUITE:
            raise EnvelopeUnsupported(f'Only the suite "{SUITE}" is supported.')
        if "ctype" in obj and obj["ctype"] != CTYPE:
            raise EnvelopeUnsupported(f'Only ctype "{CTYPE}" is supported.')
        # 1 (continued). The members of version 1, each of its type.
        return cls._from_members(obj)

    @classmethod
    def _from_canonical(cls, data: bytes) -> EnvelopeHeader | None:
        """A request header exactly as `to_bytes` writes it, read and checked by one pattern; None for any other.

        `_CANONICAL_REQUEST` admits only headers the general path accepts: the members of version 1 in `to_bytes`'s
        order and spacing, `v`, `suite` and `ctype` as they must be, strings without escapes (so that each group is
        the member's value) and each member in the format `__post_init__` checks; what a pattern cannot say (the
        decoded size of `msg_id`, times up to 2**53 - 1) is checked here. So the header is the one the general path
        would build, and is built without checking it again. Anything else (a response, other spacing or order,
        escapes, a bad member) goes the general path, which alone decides what is wrong and says why. Tests hold the
        two paths' answers equal."""
        try:
            match = _CANONICAL_REQUEST.fullmatch(data.decode("ascii"))
        except UnicodeDecodeError:
            return None
        if match is None:
            return None
        sender, skid, recipient, rkid, msg_id, iat, exp, method, target = match.groups()
        iat_, exp_ = int(iat), int(exp)
        if iat_ > MAX_TIME or exp_ > MAX_TIME or not MSG_ID_BYTES <= _b64_size(msg_id) <= MAX_MSG_ID_BYTES:
            return None
        header = object.__new__(cls)
        # What the dataclass's __init__ would set (through one frozen __setattr__ per member), in one update.
        header.__dict__.update(sender=sender, skid=skid, recipient=recipient, rkid=rkid, msg_id=msg_id, iat=iat_,
                               exp=exp_, method=method, target=target, reply_to=None, request_hash=None, audit=None)
        return header

    @classmethod
    def _from_members(cls, obj: dict[str, Any]) -> EnvelopeHeader:
        names = obj.keys()
        if names == _REQUEST_SET:
            response = False
        elif names == _RESPONSE_SET:
            response = True
        else:
            expected = _RESPONSE_SET if names & _RESPONSE_SET - _REQUEST_SET else _REQUEST_SET
            missing = sorted(expected - names)
            # Never echo the sender's member names: they are arbitrary text of any length.
            detail = f"missing {missing}" if missing else f"{len(names - expected)} unknown member(s)"
            raise EnvelopeMalformed(f"The envelope header's members are not those of version 1: {detail}.")
        strings = ("sender", "skid", "recipient", "rkid", "msg_id", "method", "target")
        integers = ("iat", "exp")
        for name in strings + (("reply_to", "request_hash") if response else ()):
            if not isinstance(obj[name], str):
                raise EnvelopeMalformed(f"The envelope header member {name!r} must be a string.")
        for name in integers:
            if type(obj[name]) is not int:
                raise EnvelopeMalformed(f"The envelope header member {name!r} must be an integer.")
        audit: AuditReceipt | None = None
        try:
            if response:
                raw = obj["audit"]
                members = set(raw) if isinstance(raw, dict) else set()
                if (members not in (_AUDIT_MEMBERS, _SIGNED_AUDIT_MEMBERS) or type(raw["index"]) is not int
                        or not isinstance(raw["leaf_hash"], str)
                        or (members == _SIGNED_AUDIT_MEMBERS and (type(raw["time"]) is not int or not isinstance(
                            raw["log"], str) or not isinstance(raw["sig"], str)))):
                    raise EnvelopeMalformed('The envelope header member "audit" must be {"index", "leaf_hash"} or '
                                            '{"index", "leaf_hash", "time", "log", "sig"}.')
                audit = AuditReceipt(index=raw["index"], leaf_hash=raw["leaf_hash"], time=raw.get("time"),
                                     log=raw.get("log"), sig=raw.get("sig"))
            return cls(sender=obj["sender"], skid=obj["skid"], recipient=obj["recipient"], rkid=obj["rkid"],
                       msg_id=obj["msg_id"], iat=obj["iat"], exp=obj["exp"], method=obj["method"],
                       target=obj["target"], reply_to=obj.get("reply_to"), request_hash=obj.get("request_hash"),
                       audit=audit)
        except ValueError as e:
            raise EnvelopeMalformed(f"The envelope {e}.") from e  # names the member, never its value


# --- the envelope on the wire -----------------------------------------------------------------------------------------

_BODY_PREFIX: Final = b'{"protected":"'
_BODY_MIDDLE: Final = b'","ciphertext":"'
_BODY_SUFFIX: Final = b'"}'

@dataclass(frozen=True, kw_only=True)
class SealedEnvelope:
    """The body as sent. `from_json` checks it (step 1); the decoded parts are computed once, on first use."""

    protected: str
    ciphertext: str = field(repr=False)

    def to_json(self) -> bytes:
        # Both parts are base64url (checked on the way in, produced by `seal` on the way out): no escaping needed.
        return b"".join((_BODY_PREFIX, self.protected.encode("ascii"), _BODY_MIDDLE, self.ciphertext.encode("ascii"),
                         _BODY_SUFFIX))

    @classmethod
    def from_json(cls, body: bytes, *, max_bytes: int = MAX_BODY_BYTES) -> SealedEnvelope:
        """Step 1: EnvelopeTooLarge (before parsing anything) or EnvelopeMalformed."""
        if len(body) > max_bytes:
            raise EnvelopeTooLarge(f"The envelope is larger than {max_bytes} bytes.")
        sealed = cls._from_canonical(body)
        if sealed is not None:
            return sealed
        try:
            obj = parse_json(body)
        except ValueError as e:
            raise EnvelopeMalformed("The body is not UTF-8 JSON.") from e
        if not isinstance(obj, dict) or obj.keys() != _BODY_MEMBERS:
            raise EnvelopeMalformed('The body must be a JSON object with exactly "protected" and "ciphertext".')
        protected, ciphertext = obj["protected"], obj["ciphertext"]
        if not isinstance(protected, str) or not isinstance(ciphertext, str):
            raise EnvelopeMalformed('"protected" and "ciphertext" must be strings.')
        sealed = cls(protected=protected, ciphertext=ciphertext)
        sealed.header_bytes  # noqa: B018  (decodes and checks both parts now: step 1)
        sealed.sealed_bytes  # noqa: B018
        return sealed

    @classmethod
    def _from_canonical(cls, body: bytes) -> SealedEnvelope | None:
        """The body exactly as `to_json` writes it, read without the JSON parser; None for any other body.

        Only a body of the form `{"protected":"P","ciphertext":"C"}` whose P and C are both canonical base64url is
        taken here: such a body is that JSON object with those two strings (base64url needs no escapes), so the
        general path below would return the same envelope. Anything else (other spacing or member order, escapes,
        bad base64) goes through the general path, which alone decides what is malformed and says why."""
        if not (body.startswith(_BODY_PREFIX) and body.endswith(_BODY_SUFFIX)):
            return None
        middle = body.find(_BODY_MIDDLE, len(_BODY_PREFIX))
        if middle < 0:
            return None
        protected, ciphertext = body[len(_BODY_PREFIX):middle], body[middle + len(_BODY_MIDDLE):-len(_BODY_SUFFIX)]
        try:
            header_bytes, sealed_bytes = b64url_decode_strict(protected), b64url_decode_strict(ciphertext)
        except ValueError:
            return None
        sealed = object.__new__(cls)
        # The members as the dataclass's __init__ would set them (the strings just checked), and the decoded parts as
        # the cached properties below would compute them (they store into __dict__ too), in one update.
        sealed.__dict__.update(protected=protected.decode("ascii"), ciphertext=ciphertext.decode("ascii"),
                               header_bytes=header_bytes, sealed_bytes=sealed_bytes)
        return sealed

    @functools.cached_property
    def header_bytes(self) -> bytes:
        try:
            return b64url_decode_strict(self.protected)
        except ValueError as e:
            raise EnvelopeMalformed('"protected" is not canonical base64url without padding.') from e

    @functools.cached_property
    def sealed_bytes(self) -> bytes:
        try:
            return b64url_decode_strict(self.ciphertext)
        except ValueError as e:
            raise EnvelopeMalformed('"ciphertext" is not canonical base64url without padding.') from e

    def request_hash(self) -> str:
        return request_hash_of(self)


@dataclass(frozen=True, kw_only=True)
class OpenedEnvelope:
    """An envelope that passed every check. `repr` shows neither the plaintext nor its JSON value."""

    sealed: SealedEnvelope = field(repr=False)
    header: EnvelopeHeader
    header_bytes: bytes = field(repr=False)
    plaintext: bytes = field(repr=False)
    json: Any = field(repr=False, compare=False)
    sig: bytes = field(repr=False)
    plaintext_hash: bytes = field(repr=False)

    @property
    def protected(self) -> str:
        return self.sealed.protected

    def evidence(self) -> dict[str, str]:
        """What the audit entry keeps (protocol.md §4 "Evidence"): with `protected` and the sender's public key, a
        third party can check that the sender signed a plaintext of this hash (`verify_evidence`)."""
        return {
            "msg_id": self.header.msg_id,
            "protected": self.sealed.protected,
            "protected_hash": _b64_sha256(self.sealed.protected.encode("ascii")),
            "sig": b64url(self.sig),
            "plaintext_hash": b64url(self.plaintext_hash),
        }

    def request_ref(self) -> RequestRef:
        """What the response to this (request) envelope must name."""
        return RequestRef(method=self.header.method, target=self.header.target, reply_to=self.header.msg_id,
                          request_hash=request_hash_of(self.sealed))


@dataclass(frozen=True, kw_only=True)
class RequestRef:
    """A request as its response must name it: method and target, `reply_to` and `request_hash`."""

    method: str
    target: str
    reply_to: str
    request_hash: str

    @classmethod
    def of_envelope(cls, sealed: SealedEnvelope) -> RequestRef:
        """For an enveloped request: the sealer's own envelope (client) or an opened one (exchange)."""
        header = EnvelopeHeader.parse(sealed.header_bytes)
        return cls(method=header.method, target=header.target, reply_to=header.msg_id,
                   request_hash=request_hash_of(sealed))

    @classmethod
    def of_proof(cls, dpop_proof: str, *, method: str, target: str) -> RequestRef:
        """For a bodiless request: `reply_to` is the DPoP proof's `jti` (read, not verified: the caller made or has
        verified the proof), `request_hash` the hash of the proof."""
        try:
            payload = dpop_proof.split(".")[1]
            jti = parse_json(b64url_decode_strict(payload))["jti"]
        except (IndexError, ValueError, KeyError, TypeError) as e:
            raise ValueError("not a compact JWS with a jti claim") from e
        if not isinstance(jti, str):
            raise ValueError("the proof's jti is not a string")
        return cls(method=method, target=target, reply_to=jti, request_hash=request_hash_of_proof(dpop_proof))


# --- seams ------------------------------------------------------------------------------------------------------------

class SenderKeyResolver(Protocol):
    def resolve(self, agency: str, skid: str, at: int) -> nacl.signing.VerifyKey:
        """The `sign` key `skid` of `agency` if it is valid at `at` (the header's iat); raise `UnknownKey` or
        `KeyRevoked` otherwise."""
        ...


@dataclass(frozen=True, kw_only=True)
class SenderKey:
    """A registered `sign` public key of an agency (or the exchange's `envelope-sign` key, for clients)."""

    agency: str
    verify_key: nacl.signing.VerifyKey = field(repr=False)
    not_before: int | None = None
    not_after: int | None = None
    revoked: bool = False

    @property
    def kid(self) -> str:
        return ed25519_kid(self.verify_key)


class StaticSenderKeys:
    """A `SenderKeyResolver` over a fixed list of keys (clients, tools, tests). A revoked key fails at once, whatever
    the iat: iat is the signer's own claim (keys.md: "an agency's revoked key fails every request at once")."""

    def __init__(self, keys: Iterable[SenderKey]) -> None:
        self._keys = {(key.agency, key.kid): key for key in keys}
        if not self._keys:
            raise ValueError("refusing an empty set of sender keys")

    def resolve(self, agency: str, skid: str, at: int) -> nacl.signing.VerifyKey:
        key = self._keys.get((agency, skid))
        if key is None:
            raise UnknownKey()
        if key.revoked:
            raise KeyRevoked()
        if (key.not_before is not None and at < key.not_before) or (key.not_after is not None and at > key.not_after):
            raise UnknownKey("The signing key (skid) was not valid at the envelope's iat.")
        return key.verify_key


# --- sealing ----------------------------------------------------------------------------------------------------------

def _sign(header_bytes: bytes, plaintext: bytes, signing_key: nacl.signing.SigningKey) -> bytes:
    return signing_key.sign(signing_input(header_bytes, hashlib.sha256(plaintext).digest())).signature


def unsafe_seal_raw(
    *, header_bytes: bytes, plaintext: bytes, signing_key: nacl.signing.SigningKey,
    recipient_key: nacl.public.PublicKey,
) -> SealedEnvelope:
    """Test-only: seal arbitrary header bytes, unchecked (to build malformed or unsupported envelopes)."""
    content = _sign(header_bytes, plaintext, signing_key) + plaintext
    sealed = nacl.bindings.crypto_box_seal(content, bytes(recipient_key))
    return SealedEnvelope(protected=b64url(header_bytes), ciphertext=b64url(sealed))


def seal(
    *, header: EnvelopeHeader, plaintext: bytes, signing_key: nacl.signing.SigningKey,
    recipient_key: nacl.public.PublicKey,
) -> SealedEnvelope:
    """Sign `plaintext` (the JSON text) under `header` with the sender's key and encrypt it to the recipient's.

    Raises ValueError if the keys are not those the header names or the header's window is not
    `iat < exp <= iat + 300`: the receiver would reject the envelope, so it is a bug of the sender."""
    if ed25519_kid(signing_key.verify_key) != header.skid:
        raise ValueError("the signing key is not the header's skid")
    if x25519_kid(recipient_key) != header.rkid:
        raise ValueError("the recipient key is not the header's rkid")
    if not header.iat < header.exp <= header.iat + MAX_LIFETIME:
        raise ValueError(f"the header's window must satisfy iat < exp <= iat + {MAX_LIFETIME}")
    return unsafe_seal_raw(header_bytes=header.to_bytes(), plaintext=plaintext, signing_key=signing_key,
                           recipient_key=recipient_key)


def seal_json(
    *, header: EnvelopeHeader, value: Any, signing_key: nacl.signing.SigningKey, recipient_key: nacl.public.PublicKey,
) -> SealedEnvelope:
    """`seal` of a JSON value as compact UTF-8 JSON."""
    return seal(header=header, plaintext=dumps_json(value), signing_key=signing_key, recipient_key=recipient_key)


# --- opening ----------------------------------------------------------------------------------------------------------

_Key = TypeVar("_Key")  # a decryption key: PyNaCl's here, another library's in the benchmark's JOSE contender


def check_addressing(
    header: EnvelopeHeader, *, receiver: str, decrypt_keys: Mapping[str, _Key], now: int, method: str, target: str,
    authenticated_agency: str | None, request: RequestRef | None,
) -> _Key:
    """Steps 3-6 of protocol.md §4 on a parsed header, in order; returns the decryption key `rkid` names. (Its own
    function so that the benchmark's JOSE contender runs exactly these checks on its replicated header claims.)"""
    # 3. Addressed to this receiver and to one of its decryption keys.
    private_key = decrypt_keys.get(header.rkid)
    if header.recipient != receiver or private_key is None:
        raise EnvelopeWrongRecipient()

    # 4. Within its window: iat < exp <= iat + 300, iat at most 10 s ahead, not yet expired.
    if not header.iat < header.exp <= header.iat + MAX_LIFETIME:
        raise EnvelopeExpired(f"The envelope's window must satisfy iat < exp <= iat + {MAX_LIFETIME}.")
    if header.iat > now + FUTURE_SKEW:
        raise EnvelopeExpired("The envelope is issued in the future; check your clock.")
    if now >= header.exp:
        raise EnvelopeExpired()

    # 5. Sealed for this request (and, for a response, answering the client's request).
    if header.method != method or header.target != target:
        raise EnvelopeMisdirected()
    if request is None:
        if header.is_response:
            raise EnvelopeMisdirected("A response envelope is not a request.")
    else:
        if header.reply_to is None or header.request_hash is None:
            raise EnvelopeReplyMismatch("The envelope is not a response.")
        if not (hmac.compare_digest(header.reply_to.encode(), request.reply_to.encode())
                and hmac.compare_digest(header.request_hash.encode(), request.request_hash.encode())):
            raise EnvelopeReplyMismatch()

    # 6. Sent by the agency that authenticated the request.
    if authenticated_agency is None or header.sender != authenticated_agency:
        raise EnvelopeSenderMismatch()
    return private_key


def _open(
    body: bytes, *, receiver: str, decrypt_keys: Mapping[str, nacl.public.PrivateKey], method: str, target: str,
    authenticated_agency: str | None, sender_keys: SenderKeyResolver, replay: ReplayCache, now: int | None,
    max_bytes: int, request: RequestRef | None,
) -> OpenedEnvelope:
    if not decrypt_keys:
        raise ValueError("refusing to open envelopes with an empty set of decryption keys")
    now = int(time.time()) if now is None else now

    # 1. JSON with exactly "protected" and "ciphertext", canonical b64, within the size limit; the header's syntax.
    sealed = SealedEnvelope.from_json(body, max_bytes=max_bytes)
    header_bytes = sealed.header_bytes
    # 2. `v`, `suite` (and `ctype`) known; then the members of version 1 (envelope_malformed).
    header = EnvelopeHeader.parse(header_bytes)

    # 3.-6. Addressing, window, request and sender: the header's checks before any cryptography.
    private_key = check_addressing(header, receiver=receiver, decrypt_keys=decrypt_keys, now=now, method=method,
                                   target=target, authenticated_agency=authenticated_agency, request=request)

    # 7. Decrypts (and holds a signature).
    try:
        content = nacl.bindings.crypto_box_seal_open(sealed.sealed_bytes, bytes(private_key.public_key),
                                                     bytes(private_key))
    except nacl.exceptions.CryptoError as e:
        raise EnvelopeUndecryptable() from e
    if len(content) < SIGNATURE_BYTES:
        raise EnvelopeUndecryptable("The envelope's content does not hold a signature.")
    sig, plaintext = content[:SIGNATURE_BYTES], content[SIGNATURE_BYTES:]

    # 8. `skid` is a sign key of the sender valid at iat and not revoked (the resolver raises UnknownKey/KeyRevoked).
    verify_key = sender_keys.resolve(header.sender, header.skid, header.iat)

    # 9. The signature verifies, over the header as sent and the plaintext's hash.
    plaintext_hash = hashlib.sha256(plaintext).digest()
    try:
        verify_key.verify(signing_input(header_bytes, plaintext_hash), sig)
    except nacl.exceptions.CryptoError as e:
        raise EnvelopeBadSignature() from e

    # 10. (sender, msg_id) not seen before; recorded only now that 1-9 passed.
    try:
        replay.claim(f"envelope:{header.sender}", header.msg_id, header.exp + REPLAY_MARGIN)
    except Replayed as e:
        raise EnvelopeReplayed() from e

    # 11. The plaintext is a JSON value (its schema is the caller's to check).
    try:
        value = parse_json(plaintext)
    except ValueError as e:
        raise EnvelopeNotJson() from e  # the parser's message may quote the plaintext: never pass it on

    return OpenedEnvelope(sealed=sealed, header=header, header_bytes=header_bytes, plaintext=plaintext, json=value,
                          sig=sig, plaintext_hash=plaintext_hash)


def open_envelope(
    body: bytes, *, receiver: str, decrypt_keys: Mapping[str, nacl.public.PrivateKey], method: str, target: str,
    authenticated_agency: str | None, sender_keys: SenderKeyResolver, replay: ReplayCache, now: int | None = None,
    max_bytes: int = MAX_BODY_BYTES,
) -> OpenedEnvelope:
    """Open a request envelope, running the receiver's checks 1-11 of protocol.md §4 in order.

    `receiver`: this party's id (`exchange`); `decrypt_keys`: rkid -> its X25519 private keys that may decrypt now
    (active and retiring; `decrypt_keyring`); `method`/`target`: the actual request (method, and path with query as
    sent on the request line); `authenticated_agency`: the access token's `agency` (None fails step 6);
    `sender_keys`: the agencies' `sign` keys; `replay`: the shared replay cache. Returns the opened envelope or raises
    an `EnvelopeError`.
    """
    return _open(body, receiver=receiver, decrypt_keys=decrypt_keys, method=method, target=target,
                 authenticated_agency=authenticated_agency, sender_keys=sender_keys, replay=replay, now=now,
                 max_bytes=max_bytes, request=None)


def open_response(
    body: bytes, *, request: RequestRef, receiver: str, decrypt_keys: Mapping[str, nacl.public.PrivateKey],
    sender: str, sender_keys: SenderKeyResolver, replay: ReplayCache, now: int | None = None,
    max_bytes: int = MAX_BODY_BYTES,
) -> OpenedEnvelope:
    """Open a response envelope as a client: the same checks, with `sender` (the exchange's id) in place of the
    token's agency, and step 5 also checking `reply_to` and `request_hash` against `request`
    (`envelope_reply_mismatch`)."""
    return _open(body, receiver=receiver, decrypt_keys=decrypt_keys, method=request.method, target=request.target,
                 authenticated_agency=sender, sender_keys=sender_keys, replay=replay, now=now, max_bytes=max_bytes,
                 request=request)


def verify_evidence(
    *, protected: str, sig: str, plaintext: bytes, verify_key: nacl.signing.VerifyKey,
) -> EnvelopeHeader:
    """Check kept evidence (protocol.md §4): that the holder of `verify_key` signed `plaintext` under the header
    `protected`. Returns the header; raises EnvelopeMalformed/EnvelopeUnsupported or EnvelopeBadSignature. Time,
    replay and recipient checks belong to live traffic and are not repeated here."""
    try:
        header_bytes, signature = b64url_decode_strict(protected), b64url_decode_strict(sig)
    except ValueError as e:
        raise EnvelopeMalformed("The evidence is not canonical base64url.") from e
    header = EnvelopeHeader.parse(header_bytes)
    if len(signature) != SIGNATURE_BYTES:
        raise EnvelopeBadSignature()
    if ed25519_kid(verify_key) != header.skid:
        raise EnvelopeBadSignature("The key is not the header's skid.")
    try:
        verify_key.verify(signing_input(header_bytes, hashlib.sha256(plaintext).digest()), signature)
    except nacl.exceptions.CryptoError as e:
        raise EnvelopeBadSignature() from e
    return header
