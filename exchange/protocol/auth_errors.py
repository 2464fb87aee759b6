"""Errors of token authentication (protocol.md §2-3); each has its stable code."""

from __future__ import annotations

from exchange.protocol.errors import ExchangeError


class InvalidToken(ExchangeError):
    status = 401
    code = "invalid_token"
    default_message = "The access token is missing, malformed, expired or revoked; get a new one."


class InvalidDPoPProof(ExchangeError):
    status = 401
    code = "invalid_dpop_proof"
    default_message = "The DPoP proof is missing or invalid."


class DPoPReplay(ExchangeError):
    status = 401
    code = "dpop_replay"
    default_message = "This DPoP proof was used before; sign a fresh proof for every request."


class InsufficientScope(ExchangeError):
    status = 403
    code = "insufficient_scope"
    default_message = "The access token does not carry a scope this operation needs."


class PurposeNotAllowed(ExchangeError):
    status = 403
    code = "purpose_not_allowed"
    default_message = "Declare a purpose of use allowed for your agency in the DPoP proof's `purpose` claim."


class Replayed(Exception):
    """A jti was seen before within its lifetime (raised by replay caches, mapped by their callers)."""
