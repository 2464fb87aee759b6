"""Errors of key management (stable codes, mapped to HTTP in exchange/http_errors.py like every ExchangeError)."""

from __future__ import annotations

from exchange.protocol.errors import Conflict, NotFound, NotPermitted, ValidationFailed


class KeyNotFound(NotFound):
    code = "key_not_found"
    default_message = "No such key."


class ApprovalNotFound(NotFound):
    code = "approval_not_found"
    default_message = "No such approval request."


class InvalidKeyState(Conflict):
    code = "invalid_key_state"
    default_message = "The key is not in a state that allows this operation."


class KeyInUse(Conflict):
    code = "key_in_use"
    default_message = "The key is still in use."


class ApprovalExpired(Conflict):
    code = "approval_expired"
    default_message = "The approval request expired; ask again."


class ApprovalClosed(Conflict):
    code = "approval_closed"
    default_message = "The approval request was already decided."


class SameOfficer(NotPermitted):
    code = "dual_control_same_officer"
    default_message = "A second, different officer must approve this operation."


class OfficerRequired(ValidationFailed):
    code = "officer_required"
    default_message = "Key operations need the officer's id (the DPoP proof's `officer` claim, or --officer)."
