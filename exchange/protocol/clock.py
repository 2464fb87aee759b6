"""The clock tolerance every receiver allows (protocol.md §2-4): one number for tokens, client assertions, DPoP
proofs and envelopes, so that the checks cannot drift apart; and the access tokens' lifetime, which the key and
client services also need (a retired key must outlive every token it signed)."""

from __future__ import annotations

from typing import Final

FUTURE_SKEW: Final = 10  # s: an `iat` may be this far in the receiver's future
TOKEN_LIFETIME: Final = 300  # s: protocol.md §2: exp - iat <= 300
