"""Benchmark the envelope (protocol.md §4) against the JOSE way of doing the same: seal + open per second.

    .venv/bin/python bench/envelope.py [--sizes 200,2000,20000,200000] [--seconds 0.5] [--rounds 5] [--json out.json]

Both sides take the same JSON payloads (returnee-like records, serialised to about each size) and do, per operation:

- ours: `EnvelopeHeader.for_request` (fresh msg_id), `seal` (Ed25519 over domain || header || SHA-256(plaintext),
  then SealedBox to X25519), `to_json`; then `open_envelope` with all eleven receiver checks: body and header parsing,
  recipient, window, method/target, sender, decryption, key lookup, signature, an in-memory replay-cache claim, and
  strict JSON parsing of the plaintext (no duplicate members).
- JOSE (joserfc): nested JWT-style sign-then-encrypt: a compact JWS (`EdDSA`, `kid`) of the payload, encrypted as a
  compact JWE (`ECDH-ES+A256KW`, `A256GCM`, `kid`, `cty: JWT`) to an X25519 key; then decrypt, verify, and parse the
  payload with the same strict JSON parser as ours (`parse_json`: no duplicate members), since a JOSE-based protocol
  with the same evidence needs would need it too. No replay cache, no window or addressing checks: it does less.
- floor: only the libsodium calls the envelope cannot avoid (Ed25519 sign and verify, crypto_box_seal and _open) and
  the same `parse_json`: no base64, no header, no checks. `floor / JOSE` is the best ratio this suite can reach in
  Python on this machine; `ours / floor` is what the envelope's encoding and checks cost.

Rounds interleave the two (ours first in odd rounds, JOSE first in even ones) so that a busy machine slows both alike;
each figure is the median over rounds. The ratio is ours/JOSE in round trips per second (target: >= 3). The JWS goes
through `exchange.auth.jose.REGISTRY` (EdDSA without joserfc's RFC 9864 deprecation warning; a copy with a larger
payload limit, the shared one untouched), the JWE through a registry allowing exactly its two algorithms with room for
200 KB. No warning filter is changed.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nacl.bindings
import nacl.public
import nacl.signing
from joserfc import jwe, jws
from joserfc.jwe import JWERegistry
from joserfc.jwk import OKPKey
from rich.console import Console
from rich.table import Table

from exchange.auth import jose
from exchange.auth.replay import InMemoryReplayCache
from exchange.envelope.envelope import (
    EnvelopeHeader,
    SenderKey,
    StaticSenderKeys,
    decrypt_keyring,
    ed25519_kid,
    open_envelope,
    parse_json,
    seal,
    x25519_kid,
)

TARGET = "/v1/returnees?dry_run=false"
JWE_ALGORITHMS = ["ECDH-ES+A256KW", "A256GCM"]
MAX_PAYLOAD = 4 << 20


def payload(size: int) -> bytes:
    """A JSON array of returnee-like records, the first that reaches `size` bytes (deterministic)."""
    rng = random.Random(size)
    given = ["Фарҳод", "Dilnoza", "Rustam", "Zarina", "Behruz", "Мадина"]
    records: list[dict[str, Any]] = []
    while True:
        records.append({
            "register_number": f"RT-2015-{rng.randrange(10**6):06d}",
            "person_name": {"given": rng.choice(given), "surname": rng.choice(["Rahimov", "Karimova", "Саидов"])},
            "birth_date": f"19{rng.randrange(60, 99)}-0{rng.randrange(1, 9)}-1{rng.randrange(0, 9)}",
            "status": rng.choice(["registered", "vetted", "returned"]),
            "dependants": rng.randrange(6),
        })
        data = json.dumps(records, ensure_ascii=False, separators=(",", ":")).encode()
        if len(data) >= size:
            return data


@dataclass
class Ours:
    sign: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)
    enc: nacl.public.PrivateKey = field(default_factory=nacl.public.PrivateKey.generate)

    def __post_init__(self) -> None:
        self.skid = ed25519_kid(self.sign.verify_key)
        self.rkid = x25519_kid(self.enc.public_key)
        self.keyring = decrypt_keyring([self.enc])
        self.senders = StaticSenderKeys([SenderKey(agency="interior", verify_key=self.sign.verify_key)])
        self.replay = InMemoryReplayCache()

    def seal(self, plaintext: bytes) -> bytes:
        header = EnvelopeHeader.for_request(sender="interior", skid=self.skid, recipient="exchange", rkid=self.rkid,
                                            method="POST", target=TARGET)
        return seal(header=header, plaintext=plaintext, signing_key=self.sign,
                    recipient_key=self.enc.public_key).to_json()

    def open(self, body: bytes) -> Any:
        return open_envelope(body, receiver="exchange", decrypt_keys=self.keyring, method="POST", target=TARGET,
                             authenticated_agency="interior", sender_keys=self.senders, replay=self.replay,
                             max_bytes=MAX_PAYLOAD).json


@dataclass
class Jose:
    sign: OKPKey = field(default_factory=lambda: OKPKey.generate_key("Ed25519", private=True))
    enc: OKPKey = field(default_factory=lambda: OKPKey.generate_key("X25519", private=True))

    def __post_init__(self) -> None:
        self.jws_registry = copy.copy(jose.REGISTRY)  # EdDSA without the deprecation warning, larger payloads
        self.jws_registry.max_payload_length = MAX_PAYLOAD
        self.jwe_registry = JWERegistry(algorithms=JWE_ALGORITHMS)
        self.jwe_registry.max_ciphertext_length = MAX_PAYLOAD
        self.sign_kid = self.sign.thumbprint()
        self.enc_kid = self.enc.thumbprint()

    def seal(self, plaintext: bytes) -> str:
        signed = jws.serialize_compact({"alg": jose.ALG, "kid": self.sign_kid}, plaintext, self.sign,
                                       algorithms=[jose.ALG], registry=self.jws_registry)
        return jwe.encrypt_compact({"alg": JWE_ALGORITHMS[0], "enc": JWE_ALGORITHMS[1], "kid": self.enc_kid,
                                    "cty": "JWT"}, signed, self.enc, registry=self.jwe_registry)

    def open(self, token: str) -> Any:
        signed = jwe.decrypt_compact(token, self.enc, registry=self.jwe_registry).plaintext
        verified = jws.deserialize_compact(signed, self.sign, algorithms=[jose.ALG], registry=self.jws_registry)
        return parse_json(verified.payload)


@dataclass
class Floor:
    sign: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)
    enc: nacl.public.PrivateKey = field(default_factory=nacl.public.PrivateKey.generate)

    def __post_init__(self) -> None:
        self.pk, self.sk = bytes(self.enc.public_key), bytes(self.enc)

    def seal(self, plaintext: bytes) -> bytes:
        sig = self.sign.sign(hashlib.sha256(plaintext).digest()).signature
        return nacl.bindings.crypto_box_seal(sig + plaintext, self.pk)

    def open(self, box: bytes) -> Any:
        content = nacl.bindings.crypto_box_seal_open(box, self.pk, self.sk)
        self.sign.verify_key.verify(hashlib.sha256(content[64:]).digest(), content[:64])
        return parse_json(content[64:])


@dataclass
class Sample:
    ops_per_s: float
    seal_us: float
    open_us: float
    wire_bytes: int


def measure(seal_: Callable[[bytes], Any], open_: Callable[[Any], Any], plaintext: bytes, seconds: float) -> Sample:
    expected = json.loads(plaintext)
    wire = seal_(plaintext)
    if open_(wire) != expected:
        raise SystemExit("a round trip did not return the payload")
    sealing = opening = 0.0
    count = 0
    clock = time.perf_counter
    start = clock()
    while True:
        t0 = clock()
        wire = seal_(plaintext)
        t1 = clock()
        open_(wire)
        t2 = clock()
        sealing += t1 - t0
        opening += t2 - t1
        count += 1
        if t2 - start >= seconds:
            break
    return Sample(ops_per_s=count / (t2 - start), seal_us=sealing / count * 1e6, open_us=opening / count * 1e6,
                  wire_bytes=len(wire))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="200,2000,20000,200000", help="payload sizes in bytes, comma-separated")
    parser.add_argument("--seconds", type=float, default=0.5, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; figures are medians")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    payloads = {size: payload(size) for size in sizes}
    ours, theirs, floor = Ours(), Jose(), Floor()
    contenders: dict[str, tuple[Callable[[bytes], Any], Callable[[Any], Any]]] = {
        "ours": (ours.seal, ours.open), "jose": (theirs.seal, theirs.open), "floor": (floor.seal, floor.open)}
    results: dict[int, dict[str, list[Sample]]] = {size: {name: [] for name in contenders} for size in sizes}
    err = Console(stderr=True)
    for round_ in range(args.rounds):
        order = ["ours", "jose", "floor"] if round_ % 2 == 0 else ["floor", "jose", "ours"]
        for size in sizes:
            for name in order:
                seal_, open_ = contenders[name]
                results[size][name].append(measure(seal_, open_, payloads[size], args.seconds))
        err.print(f"round {round_ + 1}/{args.rounds} done", highlight=False)

    table = Table(title="Envelope v1 vs JOSE nested JWS-in-JWE: seal + open round trips (medians over rounds)")
    for column in ("payload", "ours /s", "JOSE /s", "ours/JOSE", "floor /s", "floor/JOSE", "ours µs seal+open",
                   "JOSE µs seal+open", "wire B ours/JOSE"):
        table.add_column(column, justify="right")
    summary: list[dict[str, Any]] = []
    for size in sizes:
        row: dict[str, Any] = {"size": len(payloads[size])}
        for name in contenders:
            samples = results[size][name]
            row[name] = {"ops_per_s": statistics.median(s.ops_per_s for s in samples),
                         "seal_us": statistics.median(s.seal_us for s in samples),
                         "open_us": statistics.median(s.open_us for s in samples),
                         "wire_bytes": samples[-1].wire_bytes,
                         "rounds": [s.ops_per_s for s in samples]}
        row["ratio"] = row["ours"]["ops_per_s"] / row["jose"]["ops_per_s"]
        row["floor_ratio"] = row["floor"]["ops_per_s"] / row["jose"]["ops_per_s"]
        summary.append(row)
        table.add_row(
            f"{row['size']:,} B", f"{row['ours']['ops_per_s']:,.0f}", f"{row['jose']['ops_per_s']:,.0f}",
            f"[{'green' if row['ratio'] >= 3 else 'yellow'}]{row['ratio']:.2f}×[/]",
            f"{row['floor']['ops_per_s']:,.0f}", f"{row['floor_ratio']:.2f}×",
            f"{row['ours']['seal_us']:,.0f} + {row['ours']['open_us']:,.0f}",
            f"{row['jose']['seal_us']:,.0f} + {row['jose']['open_us']:,.0f}",
            f"{row['ours']['wire_bytes']:,} / {row['jose']['wire_bytes']:,}")
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    console.print(table)
    print(f"python {platform.python_version()} on {platform.machine()}, {args.rounds} rounds × "
          f"{args.seconds} s per cell; ratio = ours / JOSE round trips per second (target >= 3)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"settings": vars(args), "python": platform.python_version(), "results": summary}, handle,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
