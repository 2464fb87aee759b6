"""Errors of the audit log.

`AuditUnavailable` reaches callers of the API (503 `audit_unavailable`: the entry could not be written, so nothing
was), and so does `AuditPending` (500 `audit_pending`: the call was stored, its entry not yet sequenced). The
`VerificationError` family is raised by the offline checks (proofs, checkpoints, a whole log); the verifier and the
client library report them, the API never does.
"""

from __future__ import annotations

from exchange.protocol.errors import ExchangeError


class AuditUnavailable(ExchangeError):
    """The audit entry of a call could not be written: the call fails and changes nothing (fail closed)."""

    status = 503
    code = "audit_unavailable"
    default_message = "The audit log could not record this call, so nothing was changed; retry later."


class AuditKeyUnavailable(AuditUnavailable):
    """The exchange's active `audit` key does not load (missing, damaged): no checkpoint could vouch for a call's
    entry, so no call is served; nothing was changed and a retry is safe once the key store is repaired."""

    code = "audit_key_unavailable"
    default_message = ("The exchange cannot sign its audit log (its audit key is unavailable), so it serves no "
                       "calls; nothing was changed; retry later.")


class AuditPending(ExchangeError):
    """The call was carried out and its entry stored, but the entry could not be sequenced into the log after the
    commit. Not a 503: a 503 promises that nothing was stored. A write is repeated only by sending the same request
    envelope again (same `msg_id`), which answers the stored outcome (the client library does); a new envelope would
    store it twice."""

    status = 500
    code = "audit_pending"
    default_message = ("Your call was carried out and its audit entry stored, but the entry could not be given its "
                       "place in the audit log yet (it will be); the response is withheld. Send the same request "
                       "envelope again (same msg_id) to receive its outcome; a new envelope would store it twice.")


class VerificationError(Exception):
    """Something presented as evidence did not verify."""


class InvalidProof(VerificationError):
    """An inclusion or consistency proof does not lead to the root it claims (RFC 9162 §2.1.3.2, §2.1.4.2)."""


class InvalidCheckpoint(VerificationError):
    """A signed note is malformed, signed by no trusted key, or not a checkpoint of the expected log."""


class LogMismatch(VerificationError):
    """The log differs from what was signed, first at `index` (somewhere in `index`..`last` when only a range can
    be named: a consistently rewritten stretch is pinned down only by the signed checkpoints around it)."""

    def __init__(self, index: int, reason: str, *, last: int | None = None) -> None:
        self.index = index
        self.last = index if last is None else last
        self.reason = reason
        where = f"index {index}" if self.last == index else f"index {index} (somewhere in {index}..{self.last})"
        super().__init__(f"first bad {where}: {reason}")


class CheckpointPending(ExchangeError):
    """The entry is in the log, but not yet in a checkpoint its witnesses have cosigned (the service signs one at
    least every `EXCHANGE_AUDIT_CHECKPOINT_SECONDS` and submits it to them in the background)."""

    status = 409
    code = "checkpoint_pending"
    default_message = "The entry is not in a witnessed checkpoint yet; ask again in a few seconds."
