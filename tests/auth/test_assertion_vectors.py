"""The published client assertion vectors (`schemas/test-vectors/client-assertion-v1.json`) against the token
endpoint's own check (`PrivateKeyJwt`): each positive is accepted, each negative refused with `invalid_client`."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from authlib.oauth2.rfc6749 import InvalidClientError

from exchange.auth import server
from exchange.auth.server import PrivateKeyJwt
from exchange.protocol import jose
from exchange.protocol.auth_errors import Replayed

PATH = Path(__file__).resolve().parents[2] / "schemas" / "test-vectors" / "client-assertion-v1.json"
DOC: dict[str, Any] = json.loads(PATH.read_text(encoding="utf-8"))


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SeenSet:
    def __init__(self, seen: list[list[str]]) -> None:
        self.seen = {(namespace, jti) for namespace, jti in seen}

    def claim(self, namespace: str, jti: str, expires_at: int) -> None:
        if (namespace, jti) in self.seen:
            raise Replayed(jti)
        self.seen.add((namespace, jti))


def check(vector: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    context = vector["context"]
    monkeypatch.setattr(server.time, "time", lambda: float(context["now"]))  # the vectors' clock
    keys = jose.KeySet([jose.OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": DOC["keys"][name]["public"]})
                        for name in context["client_keys"]])
    endpoint = PrivateKeyJwt(issuer=context["issuer"], replay=SeenSet(context["seen"]))
    claims: dict[str, Any] = endpoint.process_assertion_claims(vector["token"], keys)
    return claims


@pytest.mark.parametrize("vector", DOC["positive"], ids=[v["name"] for v in DOC["positive"]])
def test_positive_assertions_are_accepted(vector: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    claims = check(vector, monkeypatch)
    assert claims["jti"] == vector["expect"]["jti"] and claims == vector["claims"]
    head, body, sig = vector["token"].split(".")  # by hand: Ed25519 over header.claims
    key = DOC["keys"][vector["context"]["client_keys"][0]]
    nacl.signing.VerifyKey(b64d(key["public"])).verify(f"{head}.{body}".encode(), b64d(sig))


@pytest.mark.parametrize("vector", DOC["negative"], ids=[v["name"] for v in DOC["negative"]])
def test_negative_assertions_are_refused(vector: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidClientError) as caught:
        check(vector, monkeypatch)
    assert caught.value.error == vector["expect"]["code"] == "invalid_client"
    assert vector["expect"]["status"] == 401  # the token endpoint answers invalid_client with 401
