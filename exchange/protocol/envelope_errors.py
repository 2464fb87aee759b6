"""Errors of the signed-and-encrypted envelope (protocol.md §4), one class per stable code.

The receiver's checks run in the order of protocol.md §4 and the first that fails decides the code. HTTP statuses:

| step | class | status | code |
|---|---|---|---|
| 1 | `EnvelopeMalformed` | 400 | `envelope_malformed` |
| 1 | `EnvelopeTooLarge` | 413 | `envelope_too_large` |
| 2 | `EnvelopeUnsupported` | 400 | `envelope_unsupported` |
| 3 | `EnvelopeWrongRecipient` | 400 | `envelope_wrong_recipient` |
| 4 | `EnvelopeExpired` | 400 | `envelope_expired` |
| 5 | `EnvelopeMisdirected` | 400 | `envelope_misdirected` |
| 5 (responses) | `EnvelopeReplyMismatch` | 502 | `envelope_reply_mismatch` |
| 6 | `EnvelopeSenderMismatch` | 403 | `envelope_sender_mismatch` |
| 7 | `EnvelopeUndecryptable` | 400 | `envelope_undecryptable` |
| 8 | `UnknownKey` | 401 | `unknown_key` |
| 8 | `KeyRevoked` | 401 | `key_revoked` |
| 9 | `EnvelopeBadSignature` | 401 | `envelope_bad_signature` |
| 10 | `EnvelopeReplayed` | 409 | `envelope_replayed` |
| 11 | `EnvelopeNotJson` | 422 | `validation_failed` |

Why: steps 1-5 and 7 are about the shape, version, addressing, freshness or integrity of the message; a client can
fix them by sealing a correct envelope, so they are 400 (413 for size, RFC 9110 §15.5.14). Steps 8-9 are a failure to
authenticate the message's origin (the signer is unknown, revoked, or the signature is not its), hence 401. Step 6 is
an authenticated caller speaking for another agency: it is known who asks, and it may not do this, hence 403. A
replay is a conflict with the state of the exchange (409), like a reused DPoP `jti` but without the token semantics
of 401. Step 11 is the ordinary 422 of protocol.md §4 item 11; `EnvelopeNotJson` is also a `ValidationFailed`, so a
handler that formats field errors treats it alike. `EnvelopeReplyMismatch` is raised by a client reading a response
that does not answer its request: the exchange never sends it, and 502 (a bad answer from upstream) is what a client
library reports it as.

Messages are fixed texts or name header members; they never carry plaintext, key material or ciphertext.
"""

from __future__ import annotations

from typing import ClassVar

from exchange.protocol.errors import ExchangeError, ValidationFailed


class EnvelopeError(ExchangeError):
    """Base of every envelope rejection; `step` is the receiver check of protocol.md §4 that raised it."""

    status = 400
    code = "envelope_error"
    default_message = "The envelope was rejected."
    step: ClassVar[int] = 0


class EnvelopeMalformed(EnvelopeError):
    step = 1
    code = "envelope_malformed"
    default_message = ('The body must be a JSON object with exactly the members "protected" and "ciphertext", '
                       "both base64url without padding, the header a JSON object of protocol v1.")


class EnvelopeTooLarge(EnvelopeError):
    step = 1
    status = 413
    code = "envelope_too_large"
    default_message = "The envelope is larger than the exchange accepts."


class EnvelopeUnsupported(EnvelopeError):
    step = 2
    code = "envelope_unsupported"
    default_message = 'Only envelope version 1 with suite "ed25519+x25519-sealedbox" and ctype application/json.'


class EnvelopeWrongRecipient(EnvelopeError):
    step = 3
    code = "envelope_wrong_recipient"
    default_message = "The envelope is not addressed to this receiver or one of its current encryption keys."


class EnvelopeExpired(EnvelopeError):
    step = 4
    code = "envelope_expired"
    default_message = "The envelope is outside its validity window (iat/exp); seal a fresh one."


class EnvelopeMisdirected(EnvelopeError):
    step = 5
    code = "envelope_misdirected"
    default_message = "The envelope was sealed for another request (method and target must match this one)."


class EnvelopeReplyMismatch(EnvelopeError):
    step = 5
    status = 502
    code = "envelope_reply_mismatch"
    default_message = "The response envelope does not answer this request (reply_to / request_hash)."


class EnvelopeSenderMismatch(EnvelopeError):
    step = 6
    status = 403
    code = "envelope_sender_mismatch"
    default_message = "The envelope's sender is not the agency that authenticated this request."


class EnvelopeUndecryptable(EnvelopeError):
    step = 7
    code = "envelope_undecryptable"
    default_message = "The envelope could not be decrypted."


class UnknownKey(EnvelopeError):
    step = 8
    status = 401
    code = "unknown_key"
    default_message = "The signing key (skid) is not a registered sign key of the sender valid at iat."


class KeyRevoked(EnvelopeError):
    step = 8
    status = 401
    code = "key_revoked"
    default_message = "The signing key (skid) of the sender is revoked."


class EnvelopeBadSignature(EnvelopeError):
    step = 9
    status = 401
    code = "envelope_bad_signature"
    default_message = "The envelope's signature does not verify."


class EnvelopeReplayed(EnvelopeError):
    step = 10
    status = 409
    code = "envelope_replayed"
    default_message = "This envelope (sender, msg_id) was received before; seal a new one for every request."


class EnvelopeNotJson(EnvelopeError, ValidationFailed):
    step = 11
    status = 422
    code = "validation_failed"
    default_message = "The envelope's content is not a JSON value."


__all__ = [
    "EnvelopeBadSignature",
    "EnvelopeError",
    "EnvelopeExpired",
    "EnvelopeMalformed",
    "EnvelopeMisdirected",
    "EnvelopeNotJson",
    "EnvelopeReplayed",
    "EnvelopeReplyMismatch",
    "EnvelopeSenderMismatch",
    "EnvelopeTooLarge",
    "EnvelopeUndecryptable",
    "EnvelopeUnsupported",
    "EnvelopeWrongRecipient",
    "KeyRevoked",
    "UnknownKey",
]
