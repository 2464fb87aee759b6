"""The tamper-evident audit log (../shared/spec/audit.md).

Every call to the API, every token and every key or client operation becomes one entry: a JSON object encoded with
RFC 8785, stored verbatim, hashed into an RFC 6962 Merkle tree whose heads are published as C2SP signed checkpoints.

- `merkle`: tree hashing, O(log n) proofs from stored complete subtrees, RFC 9162 verification
- `checkpoint`: C2SP signed notes and checkpoints
- `models`, `services`: the tables and the log itself (append under one lock, proofs, search, checkpoints)
- `recorder`, `context`: the Flask hook that records every `/v1/` call, and `record_event` for everything else
- `views`, `schemas`: the auditors' endpoints under `/v1/audit/`
- `verify`, `cli`: the offline verifier and `exchange audit ...`; `client`: check one's own entry against a checkpoint
"""
