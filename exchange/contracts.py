"""The language-neutral contracts in `schemas/`, generated from the code.

`schemas/openapi.json` is the OpenAPI document the running exchange serves, written with sorted keys so that diffs
stay readable. A test (and `exchange schemas check`) fails when the committed file is stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import Flask

from exchange.config import PROJECT_ROOT

CONTRACTS_DIR = PROJECT_ROOT / "schemas"


def render_contracts(app: Flask) -> dict[str, str]:
    """File name -> exact file content."""
    spec: dict[str, Any] = app.extensions["exchange.api"].spec.to_dict()
    return {"openapi.json": json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False) + "\n"}


def write_contracts(app: Flask, directory: Path = CONTRACTS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in render_contracts(app).items():
        path = directory / name
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def stale_contracts(app: Flask, directory: Path = CONTRACTS_DIR) -> list[str]:
    stale = []
    for name, content in render_contracts(app).items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            stale.append(name)
    return stale
