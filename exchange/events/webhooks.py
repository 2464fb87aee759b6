"""Webhooks (events.md "Pushing"): registration by a security officer, and the delivery worker.

The worker (`exchange deliver`) turns each new event of a webhook's client's agency, of the types it asked for, into a
delivery row (the event body is copied there: retention may delete the event first), then POSTs each due delivery as
a request envelope signed by the exchange's `envelope-sign` key and sealed to the client's newest active `enc` key
(`method` POST, `target` the URL's path). A 2xx answer delivers it; anything else (another status, a timeout, a
refused connection, no `enc` key) is retried after an exponential backoff with full jitter (`BASE` doubled per
attempt, at most `CAP`), for `DEAD_AFTER` (24 h) from the event: then it is dead. At least once: a delivery whose
answer was lost is sent again, and receivers de-duplicate by the event's `id` (`exchange.partner.webhooks`).
"""

from __future__ import annotations

import logging
import random
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import nacl.public
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from exchange.clients.keys import client_by_id, newest_active_enc_key
from exchange.db import utcnow
from exchange.events.errors import WebhookNotFound
from exchange.events.models import Event, Webhook, WebhookDelivery
from exchange.protocol.encoding import b64url_decode
from exchange.protocol.envelope import MEDIA_TYPE, EnvelopeHeader, seal_json
from exchange.protocol.errors import NotFound

log = logging.getLogger("exchange.events")

Clock = Callable[[], datetime]
EXCHANGE = "exchange"
BASE = timedelta(seconds=5)
CAP = timedelta(hours=1)
DEAD_AFTER = timedelta(hours=24)
BATCH = 100
ERROR_TEXT = 500  # characters of an error kept in `last_error`


class ClientNotFound(NotFound):
    code = "not_found"
    default_message = "No such client."


class WebhookService:
    def __init__(self, *, session: Session, clock: Clock = utcnow) -> None:
        self.session = session
        self.clock = clock

    def register(self, client_id: str, data: Mapping[str, Any], *, officer: str | None) -> Webhook:
        """A webhook for `client_id`; it receives the events committed from now on."""
        if client_by_id(self.session, client_id) is None:
            raise ClientNotFound(f"No client {client_id!r}.")
        head = self.session.scalar(select(func.max(Event.seq))) or 0
        webhook = Webhook(client_id=client_id, url=data["url"], event_types=list(data["event_types"]),
                          created_by=officer, created_at=self.clock(), cursor=head)
        self.session.add(webhook)
        self.session.flush()
        return webhook

    def of_client(self, client_id: str) -> list[Webhook]:
        if client_by_id(self.session, client_id) is None:
            raise ClientNotFound(f"No client {client_id!r}.")
        return list(self.session.scalars(select(Webhook).where(Webhook.client_id == client_id)
                                         .order_by(Webhook.created_at, Webhook.id)))

    def get(self, client_id: str, webhook_id: uuid.UUID) -> Webhook:
        webhook = self.session.get(Webhook, webhook_id)
        if webhook is None or webhook.client_id != client_id:
            raise WebhookNotFound()
        return webhook

    def delete(self, client_id: str, webhook_id: uuid.UUID) -> None:
        self.session.delete(self.get(client_id, webhook_id))
        self.session.flush()

    def deliveries(self, client_id: str, webhook_id: uuid.UUID, *, state: str | None,
                   limit: int) -> list[WebhookDelivery]:
        self.get(client_id, webhook_id)
        stmt = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
        if state is not None:
            stmt = stmt.where(WebhookDelivery.state == state)
        return list(self.session.scalars(stmt.order_by(WebhookDelivery.created_at.desc()).limit(limit)))


class Poster(Protocol):
    def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST and return the status; raise on a transport failure."""


class EnvelopeSigner(Protocol):
    @property
    def kid(self) -> str: ...

    @property
    def signing_key(self) -> Any: ...


@dataclass(frozen=True, kw_only=True)
class RunResult:
    enqueued: int
    delivered: int
    retried: int
    dead: int


def backoff(attempts: int, rng: random.Random) -> timedelta:
    """Full jitter: a random delay up to BASE * 2^(attempts-1), capped at CAP."""
    ceiling = min(CAP, BASE * (2 ** min(attempts - 1, 20)))
    return timedelta(seconds=rng.uniform(0.5, 1.0) * ceiling.total_seconds())


class Deliverer:
    """One pass of the delivery worker over a session (the CLI commits after each pass)."""

    def __init__(self, *, session: Session, signer: Callable[[], EnvelopeSigner], post: Poster,
                 clock: Clock = utcnow, rng: random.Random | None = None, dead_after: timedelta = DEAD_AFTER) -> None:
        self.session = session
        self.signer = signer
        self.post = post
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311  (jitter, not security)
        self.dead_after = dead_after

    def enqueue(self) -> int:
        """Turn new events into deliveries, for every webhook."""
        count = 0
        for webhook in self.session.scalars(select(Webhook).with_for_update()):
            client = client_by_id(self.session, webhook.client_id)
            if client is None:
                continue
            events = list(self.session.scalars(
                select(Event).where(Event.agency == client.agency, Event.seq > webhook.cursor)
                .order_by(Event.seq).limit(BATCH * 10)))
            for event in events:
                if event.type in webhook.event_types:
                    self.session.add(WebhookDelivery(
                        webhook_id=webhook.id, event_id=event.id, event_type=event.type, body=event.body,
                        state="pending", attempts=0, created_at=event.occurred_at, next_attempt_at=self.clock()))
                    count += 1
            if events:
                webhook.cursor = events[-1].seq
        self.session.flush()
        return count

    def attempt_due(self) -> RunResult:
        now = self.clock()
        due = list(self.session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at).limit(BATCH)))
        delivered = retried = dead = 0
        for delivery in due:
            webhook = self.session.get(Webhook, delivery.webhook_id)
            assert webhook is not None  # noqa: S101  (deliveries are deleted with their webhook)
            error = self._attempt(webhook, delivery)
            now = self.clock()
            delivery.attempts += 1
            delivery.last_attempt_at = now
            if error is None:
                delivery.state, delivery.delivered_at, delivery.last_error = "delivered", now, None
                delivered += 1
                continue
            delivery.last_error = error[:ERROR_TEXT]
            if now - delivery.created_at >= self.dead_after:
                delivery.state = "dead"
                dead += 1
            else:
                delivery.next_attempt_at = now + backoff(delivery.attempts, self.rng)
                retried += 1
        self.session.flush()
        return RunResult(enqueued=0, delivered=delivered, retried=retried, dead=dead)

    def run_once(self) -> RunResult:
        enqueued = self.enqueue()
        result = self.attempt_due()
        return RunResult(enqueued=enqueued, delivered=result.delivered, retried=result.retried, dead=result.dead)

    def _attempt(self, webhook: Webhook, delivery: WebhookDelivery) -> str | None:
        """Seal and POST one delivery; None when the receiver took it, else why not (kept as `last_error`)."""
        client = client_by_id(self.session, webhook.client_id)
        key = newest_active_enc_key(self.session, webhook.client_id)
        if client is None or key is None:
            return "no_enc_key: the client has no active enc key to seal to"
        signer = self.signer()
        target = urllib.parse.urlsplit(webhook.url).path or "/"
        header = EnvelopeHeader.for_request(sender=EXCHANGE, skid=signer.kid, recipient=client.agency,
                                            rkid=key.kid, method="POST", target=target)
        sealed = seal_json(header=header, value=delivery.body, signing_key=signer.signing_key,
                           recipient_key=nacl.public.PublicKey(b64url_decode(key.x)))
        headers = {"Content-Type": MEDIA_TYPE,
                   "X-Exchange-Event-Id": str(delivery.event_id)}
        try:
            status = self.post(webhook.url, sealed.to_json(), headers)
        except Exception as e:  # noqa: BLE001  (any transport failure is a retry)
            return f"transport: {type(e).__name__}"
        if 200 <= status < 300:
            return None
        return f"http_{status}"
