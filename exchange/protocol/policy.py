"""Scopes and purposes of use per agency (domain.md "Scopes", "Purposes of use")."""

from __future__ import annotations

AGENCY_SCOPES: dict[str, frozenset[str]] = {
    "interior": frozenset({"returnees:read", "returnees:write", "events:read"}),
    "border": frozenset({"returnees:screen", "crossings:write", "events:read"}),
    "prosecutor": frozenset({"returnees:read", "decisions:write", "events:read"}),
    "auditor": frozenset({"audit:read"}),
    "security": frozenset({"clients:admin", "keys:admin"}),
}
PURPOSES: dict[str, frozenset[str]] = {
    "interior": frozenset({"amnesty-vetting", "reintegration", "register-maintenance"}),
    "border": frozenset({"border-screening"}),
    "prosecutor": frozenset({"criminal-proceedings", "amnesty-review"}),
    "auditor": frozenset({"oversight"}),
    "security": frozenset({"key-management"}),
}
ALL_SCOPES = sorted(set().union(*AGENCY_SCOPES.values()))
