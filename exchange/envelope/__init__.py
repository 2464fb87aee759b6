"""Signed-and-encrypted envelopes (protocol.md §4): the cryptographic core, free of any web framework.

- `exchange.protocol.envelope`: `EnvelopeHeader`, `SealedEnvelope`, `OpenedEnvelope`, `seal`, `open_envelope` (the
  receiver's eleven checks, in the spec's order), `open_response` (a client's, with the reply checks), the helpers
  (`request_hash_of`, `request_hash_of_proof`, `new_msg_id`, `x25519_kid`, `ed25519_kid`, `decrypt_keyring`) and the
  seams (`SenderKeyResolver`, `ReplayCache`).
- `exchange.envelope.errors`: one `EnvelopeError` per stable code, with its HTTP status and the step that raises it.
- `exchange.protocol.vectors`: the published test vectors (`schemas/test-vectors/envelope-v1.json`), generated from
  fixed seeds, for implementations in other languages.

The web layer reads the body, calls `open_envelope` with the actual method and request target, the token's agency,
the exchange's decryption keys and the agencies' sign keys, and answers with `seal` to the agency's `enc` key.
"""
