"""Deprecated name of the partner library, kept importable for existing integrations: use `exchange.partner`.

`from exchange.client import ExchangeClient` and `from exchange.client.api import ...` (likewise `credentials`,
`envelopes`, `errors`) still work and give the very same objects as `exchange.partner`; importing this module warns
(DeprecationWarning). It goes in the next major version.
"""

import sys
import warnings

from exchange.partner import (
    ExchangeClient,
    ExchangeClientError,
    PartnerKeys,
    ResponseVerificationError,
    Result,
    RetryPolicy,
    api,
    credentials,
    envelopes,
    errors,
)

warnings.warn("exchange.client is deprecated: import exchange.partner", DeprecationWarning, stacklevel=2)

for _module in (api, credentials, envelopes, errors):
    sys.modules[f"{__name__}.{_module.__name__.rpartition('.')[2]}"] = _module

__all__ = ["ExchangeClient", "ExchangeClientError", "PartnerKeys", "ResponseVerificationError", "Result", "RetryPolicy"]
