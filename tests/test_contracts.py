"""The contract files partner agencies consume are generated from the code and must be current."""

from __future__ import annotations

import json
import re

from flask import Flask

from exchange.contracts import CONTRACTS_DIR, render_contracts, stale_contracts


def test_schemas_folder_is_current(app: Flask) -> None:
    stale = stale_contracts(app)
    assert stale == [], f"schemas/ is stale: {stale}; run `exchange schemas write` and commit the result"


def test_committed_openapi_matches_what_the_server_serves(app: Flask) -> None:
    served = app.test_client().get("/openapi.json").get_json()
    assert json.loads((CONTRACTS_DIR / "openapi.json").read_text(encoding="utf-8")) == served


def test_every_api_operation_is_documented_with_a_summary(app: Flask) -> None:
    spec = json.loads(render_contracts(app)["openapi.json"])
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(("/v1/", "/oauth/", "/.well-known/"))
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    documented = {
        (path, method.upper())
        for path, operations in spec["paths"].items()
        for method in operations
        if method != "parameters"
    }
    assert routes == documented
    for operations in spec["paths"].values():
        for method, operation in operations.items():
            if method != "parameters":
                assert operation.get("summary"), operation
