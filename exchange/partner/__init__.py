"""The partner-side library: what an agency's system needs to talk to the exchange (no Flask, no database).

    with ExchangeClient.from_files("https://exchange.example", client_id="border-panji-poyon", agency="border",
                                   key_dir=Path("/etc/border/exchange-keys")) as exchange:
        hits = exchange.screening.by_name("Gulmurod Halimov", birth_date="1975").data["candidates"]
"""

from exchange.partner.api import ExchangeClient, Result, RetryPolicy
from exchange.partner.envelopes import PartnerKeys
from exchange.partner.errors import ExchangeClientError, ResponseVerificationError

__all__ = ["ExchangeClient", "ExchangeClientError", "PartnerKeys", "ResponseVerificationError", "Result", "RetryPolicy"]
