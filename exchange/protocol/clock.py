"""The clock tolerance every receiver allows (protocol.md §2-4): one number for tokens, client assertions, DPoP
proofs and envelopes, so that the checks cannot drift apart."""

from __future__ import annotations

from typing import Final

FUTURE_SKEW: Final = 10  # s: an `iat` may be this far in the receiver's future
