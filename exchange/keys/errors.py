"""Errors of key management (stable codes, mapped to HTTP in exchange/web/errors.py like every ExchangeError)."""

from __future__ import annotations

from exchange.protocol.errors import Conflict, ExchangeError, NotFound, NotPermitted, Unauthenticated, ValidationFailed

# the environment that unlocks the key store (read by exchange.keys.master; named here for the error messages)
PASSPHRASE_ENV = "EXCHANGE_MASTER_PASSPHRASE"  # noqa: S105 (the variable's name, not a secret)
KEY_ENV = "EXCHANGE_MASTER_KEY"


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


class SamePrincipal(NotPermitted):
    code = "dual_control_same_principal"
    default_message = ("A second, different security client (another client id with its own key) must approve this "
                       "operation.")


class PrincipalRequired(Unauthenticated):
    code = "principal_required"
    default_message = "Dual control needs an authenticated security client."


class PrincipalKeyInvalid(NotPermitted):
    code = "dual_control_key_invalid"
    default_message = "The statement is not signed by an active auth key of an active security client."


class KeyStoreError(ExchangeError):
    """The key store is missing, locked, unreadable or holds no usable key; the exchange fails closed."""

    status = 503
    code = "key_store_unavailable"
    default_message = "The exchange's key store is unavailable."


class KeyStoreDamaged(KeyStoreError):
    """A key file is there but does not yield its key (truncated, altered, or sealed by something else), while the
    master secret is right: the operator restores the file from a backup; changing the secret would not help."""

    code = "key_store_damaged"
    default_message = "A key file of the exchange's key store is damaged."


class MasterSecretMissing(KeyStoreError):
    code = "master_secret_missing"
    default_message = (f"The key store is locked: set {PASSPHRASE_ENV} (or {KEY_ENV}, 32 bytes in base64) "
                       "to unlock it.")


class MasterSecretWrong(KeyStoreError):
    code = "master_secret_wrong"
    default_message = "The master passphrase or key does not unlock this key store."
