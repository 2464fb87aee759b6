"""The wire protocol, shared by the server and the partner library (`exchange.partner`): encodings, envelopes, JOSE,
DPoP proofs, the replay seam, the clock, the policy tables, the Merkle tree, checkpoints, receipts and the typed
errors. No Flask, no SQLAlchemy, and nothing else of the exchange (tests/test_layers.py holds this)."""
