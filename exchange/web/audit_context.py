"""What a request's audit entry needs that the recorder cannot see itself, collected on `flask.g` while the request
runs: the ids of the records it touched (`touch`, called by the views) and members that other layers establish
(`annotate`, e.g. the envelope layer's evidence of an accepted request envelope)."""

from __future__ import annotations

from typing import Any

from flask import g, has_app_context

# Members another layer may set; the recorder fills in everything else from the request and the caller.
ANNOTATABLE = frozenset({"agency", "client_id", "officer", "purpose", "case_ref", "token_jti", "dpop_jti",
                         "envelope"})


def touch(*ids: object) -> None:
    """Note record ids this request touched (read, created or changed), in order, once each."""
    if not has_app_context():
        return
    touched: dict[str, None] = g.setdefault("audit_record_ids", {})
    for record_id in ids:
        if record_id is not None:
            touched[str(record_id)] = None


def touched() -> tuple[str, ...]:
    return tuple(g.get("audit_record_ids", {})) if has_app_context() else ()


def annotate(**members: Any) -> None:
    """Set entry members for this request's entry (only those in `ANNOTATABLE`)."""
    unknown = set(members) - ANNOTATABLE
    if unknown:
        raise ValueError(f"not annotatable audit members: {sorted(unknown)}")
    annotations: dict[str, Any] = g.setdefault("audit_annotations", {})
    annotations.update(members)


def set_action(action: str) -> None:
    """Name this request's audit action (`key.rotate`, `client.register`, ...) instead of the method's default.
    A refused call (401/403) is still recorded as `deny`."""
    g.audit_action = action


def action() -> str | None:
    value: str | None = g.get("audit_action") if has_app_context() else None
    return value


def annotated() -> dict[str, Any]:
    return dict(g.get("audit_annotations", {})) if has_app_context() else {}
