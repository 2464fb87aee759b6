"""Webhooks: registered by a security officer, delivered by the worker to a local receiver as envelopes signed by the
exchange and sealed to the client's `enc` key, retried with backoff, dead after 24 hours, visible per delivery."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy.orm import Session

from exchange.clients.services import ClientService
from exchange.events.cli import http_post
from exchange.events.webhooks import BASE, Deliverer
from exchange.keys.ring import key_ring
from exchange.partner.envelopes import PartnerKeys, PublishedKeys
from exchange.partner.webhooks import WebhookReceiver
from tests.conftest import AgencyClient
from tests.test_app import assert_error


@dataclass
class Receiver:
    """A local HTTP receiver: answers each POST with the next status of `statuses` (then 200), opens what it gets."""

    opener: WebhookReceiver
    statuses: list[int] = field(default_factory=list)
    events: list[dict[str, Any] | None] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def interior_keys(app: Flask) -> PartnerKeys:
    keys = PartnerKeys.generate()
    with Session(app.extensions["exchange.db"]) as session:
        ClientService(session=session).register(
            {"client_id": "interior-cms", "agency": "interior", "name": "interior case system",
             "scopes": ["events:read"], "keys": keys.registration()}, officer="TJ-SEC-1")
        session.commit()
    return keys


@pytest.fixture
def receiver(app: Flask, interior_keys: PartnerKeys) -> Iterator[Receiver]:
    jwks = app.test_client().get("/.well-known/jwks.json").get_json()
    state = Receiver(opener=WebhookReceiver(agency="interior", keys=interior_keys,
                                            exchange=lambda: PublishedKeys.from_jwks(jwks, fetched_at=0)))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802  (the standard library's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = state.statuses.pop(0) if state.statuses else 200
            if status == 200:
                state.events.append(state.opener.open(body, target=self.path))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/exchange"
    yield state
    server.shutdown()
    server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def deliver(app: Flask) -> Iterator[Callable[[Clock], Any]]:
    client = httpx.Client(timeout=5)

    def run(clock: Clock) -> Any:
        with Session(app.extensions["exchange.db"]) as session:
            result = Deliverer(session=session, signer=lambda: key_ring(app).active("envelope-sign"),
                               post=http_post(client), clock=clock).run_once()
            session.commit()
            return result

    yield run
    client.close()


@pytest.fixture
def security(as_agency: Callable[..., AgencyClient]) -> AgencyClient:
    return as_agency("security", officer="TJ-SEC-1")


def register_hook(security: AgencyClient, url: str, **extra: Any) -> dict[str, Any]:
    response = security.post("/v1/clients/interior-cms/webhooks", json={"url": url, **extra})
    assert response.status_code == 201, response.get_json()
    data: dict[str, Any] = response.get_json()
    return data


def deliveries(security: AgencyClient, hook: dict[str, Any]) -> list[dict[str, Any]]:
    response = security.get(f"/v1/clients/interior-cms/webhooks/{hook['id']}/deliveries")
    assert response.status_code == 200, response.get_json()
    items: list[dict[str, Any]] = response.get_json()["items"]
    return items


def unmatched_entry(border: AgencyClient, name: str) -> None:
    response = border.post("/v1/border-crossings", json={
        "crossing_point": "DYU airport", "direction": "entry", "occurred_at": datetime.now(UTC).isoformat(),
        "outcome": "admitted", "traveller_name": name})
    assert response.status_code == 201


def test_a_delivery_is_retried_until_the_receiver_takes_it(
    security: AgencyClient, border: AgencyClient, receiver: Receiver, deliver: Callable[[Clock], Any]
) -> None:
    hook = register_hook(security, receiver.url, event_types=["crossing.unmatched"])
    unmatched_entry(border, "Pushed Traveller")
    receiver.statuses = [503]
    clock = Clock()

    first = deliver(clock)
    assert (first.enqueued, first.delivered, first.retried) == (1, 0, 1)
    [pending] = deliveries(security, hook)
    assert pending["state"] == "pending" and pending["attempts"] == 1 and pending["last_error"] == "http_503"
    assert deliver(clock).delivered == 0  # not due yet: backoff

    clock.now += BASE * 2
    assert deliver(clock).delivered == 1
    [done] = deliveries(security, hook)
    assert done["state"] == "delivered" and done["attempts"] == 2 and done["last_error"] is None
    [event] = receiver.events
    assert event is not None
    assert event["type"] == "crossing.unmatched" and event["record"]["traveller_name"] == "Pushed Traveller"
    assert event["id"] == done["event_id"]


def test_a_delivery_sent_twice_is_opened_once(security: AgencyClient, border: AgencyClient,
                                              receiver: Receiver, app: Flask) -> None:
    register_hook(security, receiver.url)
    unmatched_entry(border, "Twice Traveller")
    client = httpx.Client(timeout=5)
    for _ in range(2):  # the answer to the first was "lost": the worker sends the same event again
        with Session(app.extensions["exchange.db"]) as session:
            Deliverer(session=session, signer=lambda: key_ring(app).active("envelope-sign"),
                      post=http_post(client)).run_once()
            session.rollback()
    client.close()
    assert len(receiver.events) == 2
    assert receiver.events[0] is not None and receiver.events[1] is None


def test_an_undeliverable_event_is_dead_after_24_hours(
    security: AgencyClient, border: AgencyClient, receiver: Receiver, deliver: Callable[[Clock], Any]
) -> None:
    hook = register_hook(security, receiver.url)
    unmatched_entry(border, "Dead Letter")
    receiver.statuses = [500] * 100
    clock = Clock()
    deliver(clock)
    clock.now += timedelta(hours=24, seconds=1)
    assert deliver(clock).dead == 1
    [dead] = deliveries(security, hook)
    assert dead["state"] == "dead" and dead["last_error"] == "http_500" and dead["attempts"] == 2
    assert receiver.events == []


def test_a_refused_connection_is_a_retry(security: AgencyClient, border: AgencyClient,
                                         deliver: Callable[[Clock], Any], interior_keys: PartnerKeys) -> None:
    hook = register_hook(security, "http://127.0.0.1:9/nothing-listens-here")
    unmatched_entry(border, "Nobody Home")
    assert deliver(Clock()).retried == 1
    [pending] = deliveries(security, hook)
    assert pending["state"] == "pending" and pending["last_error"].startswith("transport: ")


def test_webhooks_are_for_security_officers(security: AgencyClient, interior: AgencyClient,
                                            interior_keys: PartnerKeys) -> None:
    assert_error(interior.post("/v1/clients/interior-cms/webhooks", json={"url": "https://cms.example/hook"}),
                 403, "insufficient_scope")
    assert_error(security.post("/v1/clients/nobody/webhooks", json={"url": "https://cms.example/hook"}),
                 404, "not_found")
    assert_error(security.post("/v1/clients/interior-cms/webhooks",
                               json={"url": "https://cms.example/hook", "event_types": ["no.such"]}),
                 422, "validation_failed")
    hook = register_hook(security, "https://cms.example/hook")
    assert [h["id"] for h in security.get("/v1/clients/interior-cms/webhooks").get_json()["items"]] == [hook["id"]]
    assert security.delete(f"/v1/clients/interior-cms/webhooks/{hook['id']}").status_code == 204
    assert security.get("/v1/clients/interior-cms/webhooks").get_json()["items"] == []
    assert_error(security.get(f"/v1/clients/interior-cms/webhooks/{hook['id']}"), 404, "not_found")
