"""Liveness and readiness (operations.md): `/healthz` answers while the process runs; `/readyz` checks the database
and the key store folder."""

from __future__ import annotations

import os
from typing import Any

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from exchange.db import db
from exchange.keys.errors import KeyStoreError
from exchange.keys.ring import KeyRing, key_ring
from exchange.keys.store import SIGNING_PURPOSES
from exchange.protocol.errors import RETRY_AFTER_SECONDS

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify({"status": "ok"})


def _active_keys_open() -> str:
    """Every purpose has an active key whose private part opens (what signing and decrypting will need)."""
    ring: KeyRing = key_ring()
    try:
        for purpose in SIGNING_PURPOSES:
            ring.active(purpose)
        ring.active_encryption("envelope-enc")
        ring.active_secret()
    except (KeyStoreError, SQLAlchemyError):
        return "unavailable"
    return "ok"


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    checks: dict[str, Any] = {}
    try:
        with db.engine(current_app._get_current_object()).connect() as connection:  # type: ignore[attr-defined]
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except SQLAlchemyError:
        checks["database"] = "unreachable"
    keys_dir = current_app.config["KEYS_DIR"]
    if not (os.path.isdir(keys_dir) and os.access(keys_dir, os.R_OK | os.W_OK)):
        checks["key_store"] = "missing"
    elif checks["database"] == "ok":
        checks["key_store"] = _active_keys_open()
    ready = all(v == "ok" for v in checks.values())
    if ready:
        return jsonify({"status": "ready", "checks": checks})
    # Not ready: a 503 with a stable code (the first failed check's) and Retry-After, like every other 503.
    code = "database_unavailable" if checks["database"] != "ok" else "key_store_unavailable"
    return jsonify({"status": "not_ready", "code": code, "checks": checks}), 503, {
        "Retry-After": str(RETRY_AFTER_SECONDS)}
