"""The tamper-evident audit log (docs/audit.md).

Every call to the API, every token and every key or client operation becomes one entry: a JSON object encoded with
RFC 8785, stored verbatim, hashed into an RFC 6962 Merkle tree whose heads are published as C2SP signed checkpoints.

- `models`, `services`: the tables and the log itself (append under one lock, proofs, search, checkpoints)
- `recorder`: the Flask hook that records every `/v1/` call (the request's annotations: `exchange.web.audit_context`),
  and `record_event` for everything else
- `views`, `schemas`: the auditors' endpoints under `/v1/audit/`
- `verify`, `cli`, `remote`: the offline verifier and `exchange audit ...`

The wire side (the Merkle tree, C2SP checkpoints, receipt verification) is in `exchange.protocol`, shared with the
partner library.
"""
