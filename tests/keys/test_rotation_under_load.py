"""keys.md "Rotation without downtime", end to end: a real gunicorn with two workers, a partner calling without pause
through the client library, and a security officer rotating every kind of exchange key with `exchange keys rotate`.
Not one request may fail. Then an agency `sign` key is revoked and the very next request with it fails."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from exchange.cli import main
from exchange.clients.services import ClientService
from exchange.db import make_engine
from exchange.keys.master import MasterSecret, new_master_key, unlock
from exchange.keys.ring import provision
from exchange.keys.store import ALL_PURPOSES, FileKeyStore, secret_bytes
from exchange.partner.api import ExchangeClient, RetryPolicy
from exchange.partner.credentials import PartnerKey
from exchange.partner.envelopes import PartnerKeys
from exchange.partner.errors import ExchangeClientError
from exchange.protocol.encoding import b64url
from tests.conftest import returnee_body
from tests.server import gunicorn

CACHE_SECONDS = 1  # the workers' registry cache: activations are scheduled 2 x this + 1 s ahead


@pytest.fixture
def exchange(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_app: Any) -> Iterator[str]:
    """The exchange under gunicorn (`make_app`: only for its teardown, which empties the tables afterwards)."""
    keys_dir, master_key = tmp_path / "keys", new_master_key()
    engine = make_engine(database_url)
    provision(keys_dir, engine, master_key=master_key)
    engine.dispose()
    for name, value in (("EXCHANGE_DATABASE_URL", database_url), ("EXCHANGE_KEYS_DIR", str(keys_dir)),
                        ("EXCHANGE_MASTER_KEY", master_key), ("EXCHANGE_OFFICER", "TJ-SEC-0001"),
                        ("EXCHANGE_KEY_CACHE_SECONDS", str(CACHE_SECONDS))):
        monkeypatch.setenv(name, value)  # the CLI below, and (inherited) the gunicorn workers
    log = tmp_path / "gunicorn.log"
    # DEBUG: every log line the workers can write, for the scan below
    with gunicorn(database_url=database_url, keys_dir=keys_dir, master_key=master_key, workers=2, log=log,
                  log_level="DEBUG") as base:
        yield base
    # no private key material in any log line: every key the store holds, in every encoding we use
    store = FileKeyStore(keys_dir, master=unlock(keys_dir, MasterSecret(key=master_key)))
    secrets = [encoded for kid in store.kids() for raw in [secret_bytes(store.load(kid))]
               for encoded in (b64url(raw), raw.hex(), base64.b64encode(raw).decode())]
    text = log.read_text(errors="replace")
    assert len(secrets) >= 30 and len(text) > 1000
    assert [s for s in secrets if s in text] == []
    assert master_key not in text


def register(database_url: str, keys: PartnerKeys) -> str:
    client_id = f"interior-{uuid.uuid4().hex[:8]}"
    engine = make_engine(database_url)
    with Session(engine) as session:
        ClientService(session=session).register(
            {"client_id": client_id, "agency": "interior", "name": "Ministry registry system",
             "scopes": ["events:read", "returnees:read", "returnees:write"], "keys": keys.registration()},
            officer="TJ-SEC-0001")
        session.commit()
    engine.dispose()
    return client_id


class Caller(threading.Thread):
    """Writes and reads as fast as it can, counting every failure."""

    def __init__(self, client: ExchangeClient) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.stop = threading.Event()
        self.calls = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                number = uuid.uuid4().int % 10**9
                created = self.client.returnees.create(returnee_body(identifications=[
                    {"category": "passport", "id": f"{number:09d}", "issuer_country": "TJ"}]))
                self.client.returnees.get(created.data["id"])
                self.calls += 2
            except (ExchangeClientError, httpx.HTTPError) as e:
                self.failures.append(repr(e))


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def active_kids(base: str) -> dict[str, str]:
    keys: list[dict[str, Any]] = httpx.get(f"{base}/.well-known/jwks.json").json()["keys"]
    return {k["purpose"]: k["kid"] for k in keys if k.get("status") == "active"}


def test_rotating_every_exchange_key_under_load_fails_no_request_then_a_revoked_sign_key_fails_at_once(
    exchange: str, database_url: str
) -> None:
    keys = PartnerKeys.generate()
    client_id = register(database_url, keys)
    # Every HTTP answer is seen here, so that the library's own recoveries (a new token after a 401, a JWKS refetch
    # after envelope_wrong_recipient, a retry after a 503) cannot hide a refused request: each one counts.
    refused: list[str] = []

    def watch(response: httpx.Response) -> None:
        if response.status_code >= 400:
            response.read()
            refused.append(f"{response.request.method} {response.request.url.path}: {response.status_code} "
                           f"{response.text[:200]}")

    http = httpx.Client(timeout=10, event_hooks={"response": [watch]})
    client = ExchangeClient(exchange, client_id=client_id, agency="interior", keys=keys, http=http,
                            retry=RetryPolicy(attempts=1), purpose="register-maintenance", officer="TJ-MVD-1")
    client.returnees.list()  # token, metadata, JWKS
    before = active_kids(exchange)
    caller = Caller(client)
    caller.start()
    try:
        time.sleep(1)
        for purpose in ALL_PURPOSES:  # token, envelope-sign, audit, envelope-enc, storage
            assert "rotated" in cli("keys", "rotate", purpose)
            time.sleep(0.5)
        time.sleep(2 * CACHE_SECONDS + 3)  # every new key is active now; keep calling a little longer
        calls_at_switch = caller.calls
        time.sleep(2)
    finally:
        caller.stop.set()
        caller.join(timeout=30)
    assert caller.failures == [] and refused == []
    assert caller.calls > calls_at_switch > 20  # the partner kept calling through every rotation
    after = active_kids(exchange)
    assert set(after) == {"token", "envelope-sign", "audit", "envelope-enc"}
    assert all(after[p] != before[p] for p in after)  # every published key changed
    # a new partner process meets only the new keys, and is served
    fresh = ExchangeClient(exchange, client_id=client_id, agency="interior", keys=keys,
                           purpose="register-maintenance")
    assert fresh.returnees.list().status == 200

    # the agency replaces its own sign key through the library; the old one keeps signing during the overlap
    new_sign = PartnerKey.generate()
    rotated = client.clients.rotate_own_key(purpose="sign", new_jwk=new_sign.public_jwk, current=keys.sign)
    assert rotated.status == 201 and rotated.data["kid"] == new_sign.kid and rotated.data["status"] == "active"
    assert client.returnees.create(returnee_body()).status == 201

    # the agency's (old) sign key is revoked: the very next request sealed with it fails with key_revoked
    cli("clients", "revoke-key", client_id, keys.sign.kid, "--reason", "signing laptop lost")
    with pytest.raises(ExchangeClientError) as denied:
        client.returnees.create(returnee_body())
    assert denied.value.code == "key_revoked"
