"""Signed-and-encrypted envelopes (protocol.md §4) on this server's wire.

- `http`: opens request bodies (`EnvelopeBlueprint`, `open_request`: the receiver's checks with the actual method and
  request target, the token's agency, the exchange's decryption keys and the agencies' sign keys) and seals
  responses to the caller's `enc` key, after the audit entry exists.
- `models`: the evidence store.

The cryptographic core, free of any web framework and shared with the partner library, is in `exchange.protocol`:
`envelope` (`seal`, `open_envelope` with the eleven checks in the spec's order, `open_response`, the helpers and the
seams), `envelope_errors` (one `EnvelopeError` per stable code) and `vectors` (the published test vectors,
`schemas/test-vectors/envelope-v1.json`).
"""
