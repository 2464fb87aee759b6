"""Prosecutor General's Office: decide on a returnee sent for review (amnesty under art. 401-1).

    python examples/prosecutor.py ISSUER CLIENT_ID KEY_DIR [REGISTER_NUMBER]
    (or EXCHANGE_ISSUER, EXCHANGE_CLIENT_ID, EXCHANGE_KEY_DIR; the keys from `exchange clients keygen`)
"""

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from exchange.partner import ExchangeClient

args = sys.argv[1:] + [None] * 4
issuer = args[0] or os.environ.get("EXCHANGE_ISSUER", "http://127.0.0.1:5000")
client_id = args[1] or os.environ.get("EXCHANGE_CLIENT_ID") or sys.exit(__doc__)
key_dir = Path(args[2] or os.environ.get("EXCHANGE_KEY_DIR") or sys.exit(__doc__))
number = args[3]

with ExchangeClient.from_files(issuer, client_id, "prosecutor", key_dir, purpose="amnesty-review",
                               officer="TJ-GP-0311") as exchange:
    filters = {"register_number": number} if number else {"status": "under_review"}
    waiting = exchange.returnees.list(page_size=1, **filters).data["items"]
    if not waiting:
        sys.exit("no returnee is waiting for a decision")
    returnee = waiting[0]
    decision = exchange.prosecutorial_decisions.create({
        "returnee_id": returnee["id"], "decision": "amnesty_granted", "statute": "Criminal Code art. 401-1",
        "case_number": f"GP-{datetime.now(UTC):%Y%m%d-%H%M%S}",
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds")})
    after = exchange.returnees.get(returnee["id"]).data
    print(f"{returnee['register_number']}: {decision.data['decision']} ({decision.data['case_number']}) "
          f"-> {after['status']}; audit entry {decision.audit.index if decision.audit else '-'}")
