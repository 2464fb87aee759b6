"""Errors of client administration."""

from __future__ import annotations

from exchange.protocol.errors import Conflict, NotFound, NotPermitted


class ClientNotFound(NotFound):
    default_message = "No such client."


class DuplicateClient(Conflict):
    code = "duplicate_client"
    default_message = "A client with this client_id already exists."


class DuplicateKey(Conflict):
    code = "duplicate_key"
    default_message = "This key is already registered for the client."


class InvalidRotationProof(NotPermitted):
    code = "invalid_rotation_proof"
    default_message = "The key rotation is not signed by your current active key."
