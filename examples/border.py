"""Border post: screen a traveller's name, record the crossing, and prove the exchange logged it.

    python examples/border.py ISSUER CLIENT_ID KEY_DIR [NAME [BIRTH_YEAR]]
    (or EXCHANGE_ISSUER, EXCHANGE_CLIENT_ID, EXCHANGE_KEY_DIR; the keys from `exchange clients keygen`)
"""

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from exchange.partner import ExchangeClient

args = sys.argv[1:] + [None] * 5
issuer = args[0] or os.environ.get("EXCHANGE_ISSUER", "http://127.0.0.1:5000")
client_id = args[1] or os.environ.get("EXCHANGE_CLIENT_ID") or sys.exit(__doc__)
key_dir = Path(args[2] or os.environ.get("EXCHANGE_KEY_DIR") or sys.exit(__doc__))
name, birth_year = args[3] or "Jurabek Nazarov", args[4]

with ExchangeClient.from_files(issuer, client_id, "border", key_dir, officer="TJ-PS-017") as exchange:
    # 1. Screening: ranked candidates in the border's view (status expected/arrived/other, the active instruction).
    candidates = exchange.screening.by_name(name, birth_date=birth_year).data["candidates"]
    if not candidates:
        sys.exit(f"no one in the register matches {name!r}")
    top = candidates[0]
    person = top["returnee"]
    instruction = (person["active_border_instruction"] or {}).get("instruction", "none")
    print(f"{name!r}: {person['register_number']} {person['person_name']['full']!r} "
          f"(matched {top['matched_value']!r}, score {top['score']}), instruction {instruction}")

    # 2. The crossing: DETAIN means stop and hand over; otherwise the returnee is handed to interior's reception.
    crossing = exchange.border_crossings.create({
        "returnee_id": person["id"], "crossing_point": "Panji Poyon", "direction": "entry",
        "occurred_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "outcome": "detained" if instruction == "DETAIN" else "handed_over"})
    print(f"crossing {crossing.data['id']} recorded ({crossing.data['outcome']})")

    # 3. The receipt: the exchange's signed log holds this very call, and only grew since our last check.
    if crossing.audit is None:  # never: a verified answer with content always carries its receipt
        sys.exit("no audit receipt")
    checkpoint = exchange.audit.verify(crossing.audit, state=key_dir / "audit-state.json")
    print(f"audit entry {crossing.audit.index} is in the signed log of {checkpoint.size} entries")
