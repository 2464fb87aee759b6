"""`/v1/keys`: security officers manage the exchange's keys (scope `keys:admin`, purpose `key-management`).

Thin: each view asks `KeyService` and names its audit action (`key.<operation>`); the unit of work commits the
registry change with the audit entry. The officer is the DPoP proof's `officer` claim (logged); revoking and
destroying need the approval of a second, different security client within 15 minutes (exchange.keys.principal).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from flask import current_app, g
from flask.views import MethodView

from exchange.db import db
from exchange.envelope.http import EnvelopeBlueprint
from exchange.keys import schemas as s
from exchange.keys.errors import (
    ApprovalClosed,
    ApprovalExpired,
    ApprovalNotFound,
    InvalidKeyState,
    KeyInUse,
    KeyNotFound,
    OfficerRequired,
    SameOfficer,
)
from exchange.keys.principal import Principal, api_principal
from exchange.keys.ring import KeyRing, key_ring
from exchange.keys.service import KeyService, KeyView
from exchange.web import audit_context as audit
from exchange.web.caller import current_caller
from exchange.web.guards import protected
from exchange.web.openapi import raises

blp = EnvelopeBlueprint("keys", __name__, url_prefix="/v1/keys",
                        description="The exchange's own keys: lifecycle, rotation, dual control (security officers).")
ADMIN = {"keys:admin"}


def ring() -> KeyRing:
    value: KeyRing = key_ring()
    return value


def service() -> KeyService:
    return KeyService(session=db.session, ring=ring(),
                      overlap=timedelta(seconds=current_app.config["KEY_OVERLAP_SECONDS"]))


def officer() -> str | None:
    return current_caller().officer


def principal() -> Principal:
    return api_principal(db.session, current_caller())


def changed(action: str, views: list[KeyView] | tuple[KeyView, ...]) -> None:
    audit.set_action(action)
    audit.touch(*(v.record.kid for v in views))
    g.key_registry_changed = True


@blp.teardown_app_request
def _reload_registry(_exc: BaseException | None) -> None:
    """After a change is committed, this worker reloads the registry at once (others within their cache time)."""
    if g.pop("key_registry_changed", False):
        ring().invalidate()


@blp.route("")
class Keys(MethodView):
    @protected(scopes=ADMIN)
    @blp.arguments(s.KeyQuery, location="query")
    @blp.response(200, s.KeyList)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List the exchange's keys with their state now"""
        return {"items": service().list_keys(purpose=query.get("purpose"), state=query.get("state"))}

    @protected(scopes=ADMIN)
    @raises(InvalidKeyState, OfficerRequired)
    @blp.arguments(s.GenerateSchema)
    @blp.response(201, s.KeyView)
    def post(self, data: dict[str, Any]) -> KeyView:
        """Generate a pending key (published in the JWKS, not used until activated)"""
        view = service().generate(data["purpose"], officer=officer())
        changed("key.generate", [view])
        return view


@blp.route("/rotation")
class Rotation(MethodView):
    @protected(scopes=ADMIN)
    @raises(InvalidKeyState, KeyInUse, OfficerRequired)
    @blp.arguments(s.RotationSchema)
    @blp.response(200, s.OperationResult)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Rotate one purpose's key, or every key past its maximum age (`due`)"""
        svc = service()
        if data.get("due"):
            views = svc.rotate_due(officer=officer(), max_age_days=data.get("max_age_days"))
        else:
            views = svc.rotate(data["purpose"], officer=officer())
        changed("key.rotate", views)
        return {"keys": views, "approval": None}


@blp.route("/rewrap")
class Rewrap(MethodView):
    @protected(scopes=ADMIN)
    @raises(OfficerRequired)
    @blp.arguments(s.EmptySchema)
    @blp.response(200, s.RewrapResultView)
    def post(self, _data: dict[str, Any]) -> Any:
        """Re-seal every key file and evidence row under the active storage key"""
        result = service().rewrap(officer=officer())
        audit.set_action("key.rewrap")
        audit.touch(result.storage_kid)
        return result


@blp.route("/approvals")
class Approvals(MethodView):
    @protected(scopes=ADMIN)
    @blp.arguments(s.ApprovalQuery, location="query")
    @blp.response(200, s.ApprovalList)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Revocations and destructions filed, waiting for (or decided by) a second security client"""
        return {"items": service().approvals(status=query.get("status"))}


@blp.route("/approvals/<uuid:approval_id>")
class Approval(MethodView):
    @protected(scopes=ADMIN)
    @raises(ApprovalNotFound, ApprovalClosed, ApprovalExpired, SameOfficer, InvalidKeyState, KeyInUse, OfficerRequired)
    @blp.arguments(s.EmptySchema)
    @blp.response(200, s.OperationResult)
    def post(self, _data: dict[str, Any], approval_id: uuid.UUID) -> dict[str, Any]:
        """Approve another security client's request: the revocation or destruction happens now (403
        `dual_control_same_principal` for the client that filed it, or one sharing its keys)"""
        outcome = service().approve(approval_id, officer=officer(), principal=principal())
        changed("key.approve", outcome.keys)
        audit.touch(approval_id)
        return {"keys": outcome.keys, "approval": outcome.approval}


@blp.route("/<string:kid>")
class KeyItem(MethodView):
    @protected(scopes=ADMIN)
    @raises(KeyNotFound)
    @blp.response(200, s.KeyView)
    def get(self, kid: str) -> KeyView:
        """Show one key"""
        return service().show(kid)


@blp.route("/<string:kid>/activation")
class Activation(MethodView):
    @protected(scopes=ADMIN)
    @raises(KeyNotFound, InvalidKeyState, OfficerRequired)
    @blp.arguments(s.ActivationSchema)
    @blp.response(200, s.OperationResult)
    def post(self, data: dict[str, Any], kid: str) -> dict[str, Any]:
        """Activate a pending key (scheduled a few seconds ahead); the active one starts retiring"""
        views = service().activate(kid, officer=officer(), at=data.get("at"))
        changed("key.activate", views)
        return {"keys": views, "approval": None}


@blp.route("/<string:kid>/retirement")
class Retirement(MethodView):
    @protected(scopes=ADMIN)
    @raises(KeyNotFound, InvalidKeyState, KeyInUse, OfficerRequired)
    @blp.arguments(s.EmptySchema)
    @blp.response(200, s.KeyView)
    def post(self, _data: dict[str, Any], kid: str) -> KeyView:
        """Stop trusting a pending or retiring key now"""
        view = service().retire(kid, officer=officer())
        changed("key.retire", [view])
        return view


@blp.route("/<string:kid>/revocation")
class Revocation(MethodView):
    @protected(scopes=ADMIN)
    @raises(KeyNotFound, InvalidKeyState, OfficerRequired)
    @blp.arguments(s.ReasonSchema)
    @blp.response(202, s.OperationResult)
    def post(self, data: dict[str, Any], kid: str) -> dict[str, Any]:
        """File a revocation; it happens when a second security client approves it (within 15 minutes)"""
        approval = service().request_revocation(kid, reason=data["reason"], officer=officer(),
                                                 principal=principal())
        audit.set_action("key.revoke_request")
        audit.touch(kid, approval.id)
        return {"keys": [], "approval": approval}


@blp.route("/<string:kid>/destruction")
class Destruction(MethodView):
    @protected(scopes=ADMIN)
    @raises(KeyNotFound, InvalidKeyState, KeyInUse, OfficerRequired)
    @blp.arguments(s.OptionalReasonSchema)
    @blp.response(202, s.OperationResult)
    def post(self, data: dict[str, Any], kid: str) -> dict[str, Any]:
        """File the destruction of a key's private part; it happens when a second security client approves it"""
        approval = service().request_destruction(kid, reason=data.get("reason"), officer=officer(),
                                                  principal=principal())
        audit.set_action("key.destroy_request")
        audit.touch(kid, approval.id)
        return {"keys": [], "approval": approval}
