"""Ministry of the Interior: register a returnee and tell every border post to assist the return.

    python examples/interior.py ISSUER CLIENT_ID KEY_DIR [LATIN_NAME]
    (or EXCHANGE_ISSUER, EXCHANGE_CLIENT_ID, EXCHANGE_KEY_DIR; the keys from `exchange clients keygen`)
"""

import os
import sys
from pathlib import Path

from exchange.partner import ExchangeClient

args = sys.argv[1:] + [None] * 4
issuer = args[0] or os.environ.get("EXCHANGE_ISSUER", "http://127.0.0.1:5000")
client_id = args[1] or os.environ.get("EXCHANGE_CLIENT_ID") or sys.exit(__doc__)
key_dir = Path(args[2] or os.environ.get("EXCHANGE_KEY_DIR") or sys.exit(__doc__))
latin = args[3] or "Gulmurod Khalimov"

# interior has several purposes of use: each call declares one (register-maintenance: keeping the register)
with ExchangeClient.from_files(issuer, client_id, "interior", key_dir, purpose="register-maintenance",
                               officer="TJ-MVD-04411") as exchange:
    returnee = exchange.returnees.create({
        "person_name": {"given": "Гулмурод", "surname": "Халимов"},
        "name_variants": [{"value": latin, "script": "latn", "kind": "transliteration"}],
        "birth_date": "1975-05-14", "sex": "male", "citizenship": "TJ"}).data
    print(f"registered {returnee['register_number']} {returnee['person_name']['full']!r} ({returnee['status']})")

    instruction = exchange.border_instructions.create({
        "returnee_id": returnee["id"], "instruction": "ASSIST_RETURN",
        "reason": "Genuine wish to return; help with documents."})
    after = exchange.returnees.get(returnee["id"]).data
    print(f"{instruction.data['instruction']} to every border post: {after['register_number']} is {after['status']}")
