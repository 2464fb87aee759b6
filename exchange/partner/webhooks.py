"""Receiving webhook deliveries (events.md "Pushing"): open and verify the envelope, drop duplicates.

    receiver = WebhookReceiver(agency="interior", keys=PartnerKeys.load(key_dir),
                               exchange=lambda: exchange_client.published_keys())
    event = receiver.open(request_body, target=request_path)   # None: a delivery already seen (at least once)

Each delivery is a request envelope from the exchange (`sender` `exchange`), signed by one of its published
`envelope-sign` keys and sealed to your `enc` key, for `POST` to your URL's path. `open` runs the receiver's checks
of protocol.md §4 (recipient, window, method and target, sender, signature, replay of the envelope's msg_id) and
raises the envelope core's `EnvelopeError` when one fails: answer a non-2xx then, and the exchange retries. A
retried delivery is a new envelope of the same event: `open` remembers the last `remember` event ids and returns
None for one it has seen (answer 2xx to it all the same).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from exchange.partner.envelopes import EXCHANGE, PartnerKeys, PublishedKeys, ResponseReplayCache
from exchange.protocol.envelope import decrypt_keyring, open_envelope
from exchange.protocol.envelope_errors import EnvelopeMalformed


class WebhookReceiver:
    def __init__(self, *, agency: str, keys: PartnerKeys, exchange: Callable[[], PublishedKeys],
                 remember: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self.agency = agency
        self.keys = keys
        self.exchange = exchange
        self.remember = remember
        self.clock = clock
        self._replay = ResponseReplayCache(clock)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, body: bytes, *, target: str) -> dict[str, Any] | None:
        """The delivered event, verified; None when this event was delivered before."""
        opened = open_envelope(body, receiver=self.agency, decrypt_keys=decrypt_keyring([self.keys.enc.private_key]),
                               method="POST", target=target, authenticated_agency=EXCHANGE,
                               sender_keys=self.exchange().sender_keys(), replay=self._replay, now=int(self.clock()))
        event = opened.json
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            raise EnvelopeMalformed("A webhook delivery carries one event with an id.")
        with self._lock:
            if event["id"] in self._seen:
                self._seen.move_to_end(event["id"])
                return None
            self._seen[event["id"]] = None
            while len(self._seen) > self.remember:
                self._seen.popitem(last=False)
        return event
