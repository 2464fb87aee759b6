"""Oversight: verify the whole audit log through the API, and that it only grew since the last run.

    python examples/auditor.py ISSUER CLIENT_ID KEY_DIR
    (or EXCHANGE_ISSUER, EXCHANGE_CLIENT_ID, EXCHANGE_KEY_DIR; the keys from `exchange clients keygen`)

The first run trusts the audit key the exchange publishes and keeps the verified checkpoint in KEY_DIR; each later run
checks that the new log extends it. `exchange audit verify --server` does the same from the command line.
"""

import os
import sys
from pathlib import Path

from exchange.audit.remote import ServerSource
from exchange.audit.verify import TrustState, verify_log
from exchange.partner import ExchangeClient
from exchange.protocol.checkpoint import NoteVerifier

args = sys.argv[1:] + [None] * 3
issuer = args[0] or os.environ.get("EXCHANGE_ISSUER", "http://127.0.0.1:5000")
client_id = args[1] or os.environ.get("EXCHANGE_CLIENT_ID") or sys.exit(__doc__)
key_dir = Path(args[2] or os.environ.get("EXCHANGE_KEY_DIR") or sys.exit(__doc__))
state_file = key_dir / "audit-log-state.json"

with ExchangeClient.from_files(issuer, client_id, "auditor", key_dir, officer="TJ-OVS-002") as exchange:
    state = TrustState.load(state_file)
    source = ServerSource(exchange)
    origin = state.origin if state else source.checkpoint().split("\n", 1)[0]
    keys = [NoteVerifier.from_vkey(state.key)] if state else exchange.audit.published_verifiers(origin)
    verified = verify_log(source, verifiers=keys, origin=origin, state=state)
    checkpoint = verified.checkpoint
    print(f"verified {checkpoint.size} entries of {origin}: every entry, the root and the signature"
          + (f"; consistent with the {verified.previous.size} verified before" if verified.previous else
             " (first use: this checkpoint and key are trusted from now on)"))
    verified.state(keys[0]).save(state_file)
