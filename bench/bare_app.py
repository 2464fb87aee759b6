"""The baseline: a bare Flask app whose one endpoint returns a constant JSON document of about 1.5 KB.

It measures what any Flask response costs on this machine under this gunicorn and this load generator (WSGI, routing,
JSON encoding, one loopback TCP connection per request with sync workers), so that `run.py` can report each case as
a ratio to it. Nothing of the exchange is imported: no database, no schemas, no middleware.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

# Shaped like a register record (nested objects, lists, timestamps, non-Latin text), about 1.5 KB as JSON.
DOCUMENT: dict[str, Any] = {
    "id": "7d8f3c2e-1a4b-4c6d-9e0f-112233445566",
    "version": 3,
    "created_at": "2025-01-10T08:15:30.123456+00:00",
    "updated_at": "2025-02-01T12:00:00.654321+00:00",
    "register_number": "RT-2025-000042",
    "person_name": {"given": "Bench", "surname": "Baseline", "patronymic": None, "full": "Bench Baseline"},
    "name_variants": [
        {"value": "Бенч Бейзлайн", "script": "cyrl", "kind": "original"},
        {"value": "Bench Baseline", "script": "latn", "kind": "transliteration"},
    ],
    "birth_date": "1990-01-01",
    "sex": "male",
    "citizenship": "TJ",
    "identifications": [
        {"category": "passport", "id": "400000000", "issuer_country": "TJ", "expires": None, "status": "valid"},
    ],
    "handling_code": "H0",
    "handling_restriction": None,
    "status": "under_vetting",
    "birth_place": "Dushanbe",
    "conflict_history": [],
    "accompanying_persons": [],
    "risk_level": "medium",
    "active_border_instruction": {
        "id": "0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3",
        "version": 1,
        "created_at": "2025-01-12T09:00:00.000000+00:00",
        "updated_at": "2025-01-12T09:00:00.000000+00:00",
        "instruction": "ASSIST_RETURN",
        "valid_from": "2025-01-12T09:00:00.000000+00:00",
        "valid_until": "2025-06-12T09:00:00.000000+00:00",
        "reason": "A constant document for the bare Flask baseline.",
        "issued_by": "BENCH-000",
    },
    "hotline_contacts": [
        {
            "id": "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9",
            "received_at": "2025-01-05T10:30:00.000000+00:00",
            "channel": "relative",
            "caller_relation": "mother",
            "location_country": "TR",
            "intent_to_return": True,
            "summary": "Constant text of about the length of a real summary, for the baseline.",
            "officer": "BENCH-000",
        }
    ],
    "vetting_assessments": [],
    "border_crossings": [],
}

app = Flask(__name__)
app.json.sort_keys = False  # type: ignore[attr-defined]  # as the exchange does


@app.get("/bare")
def bare() -> ResponseReturnValue:
    return jsonify(DOCUMENT)


@app.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify({"status": "ok"})
