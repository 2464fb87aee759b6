"""Schemas of `/v1/keys`: what security officers send and see. No schema has a private member."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from exchange.keys.models import APPROVAL_STATUSES, KEY_STATES
from exchange.keys.store import ALL_PURPOSES
from exchange.web.schemas import Strict

PURPOSE = fields.String(required=True, validate=validate.OneOf(ALL_PURPOSES))


class KeyQuery(Strict):
    purpose = fields.String(validate=validate.OneOf(ALL_PURPOSES))
    state = fields.String(validate=validate.OneOf(KEY_STATES))


class ApprovalQuery(Strict):
    status = fields.String(validate=validate.OneOf(APPROVAL_STATUSES))


class GenerateSchema(Strict):
    purpose = PURPOSE


class ActivationSchema(Strict):
    at = fields.AwareDateTime(metadata={"description": "Not before (default and minimum: a few seconds from now, "
                                                      "once every worker knows the key)."})


class RotationSchema(Strict):
    purpose = fields.String(validate=validate.OneOf(ALL_PURPOSES))
    due = fields.Boolean(metadata={"description": "Rotate every key past its maximum age instead of one purpose."})
    max_age_days = fields.Dict(keys=fields.String(validate=validate.OneOf(ALL_PURPOSES)),
                               values=fields.Float(validate=validate.Range(min=0, min_inclusive=False)))

    @validates_schema
    def _one_purpose_or_due(self, data: dict[str, Any], **_: Any) -> None:
        if bool(data.get("due")) == ("purpose" in data):
            raise ValidationError("Send either purpose or due: true.", field_name="_schema")
        if "max_age_days" in data and not data.get("due"):
            raise ValidationError("max_age_days goes with due: true.", field_name="max_age_days")


class ReasonSchema(Strict):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class OptionalReasonSchema(Strict):
    reason = fields.String(validate=validate.Length(min=1, max=2000))


class EmptySchema(Strict):
    """A body with nothing in it: the signed envelope itself is the officer's act."""


class KeyView(Schema):
    class Meta:
        ordered = True

    kid = fields.String(attribute="record.kid")
    purpose = fields.String(attribute="record.purpose")
    algorithm = fields.String(attribute="record.algorithm")
    x = fields.String(attribute="record.x", allow_none=True, metadata={"description": "Public key (b64url)."})
    state = fields.String(validate=validate.OneOf(KEY_STATES))
    private_part = fields.Boolean(metadata={"description": "Whether the key store still holds the private part."})
    created_at = fields.AwareDateTime(attribute="record.created_at")
    created_by = fields.String(attribute="record.created_by", allow_none=True)
    activate_at = fields.AwareDateTime(attribute="record.activate_at", allow_none=True)
    retire_at = fields.AwareDateTime(attribute="record.retire_at", allow_none=True)
    revoked_at = fields.AwareDateTime(attribute="record.revoked_at", allow_none=True)
    revoked_reason = fields.String(attribute="record.revoked_reason", allow_none=True)
    destroyed_at = fields.AwareDateTime(attribute="record.destroyed_at", allow_none=True)


class ApprovalView(Schema):
    class Meta:
        ordered = True

    id = fields.UUID()
    operation = fields.String()
    kid = fields.String()
    reason = fields.String(allow_none=True)
    status = fields.String()
    requested_by = fields.String(metadata={"description": "The filing officer's id, as claimed (logged only)."})
    requested_by_client = fields.String(allow_none=True, metadata={
        "description": "The security client that filed the request (authenticated)."})
    requested_at = fields.AwareDateTime()
    expires_at = fields.AwareDateTime()
    decided_by = fields.String(allow_none=True, metadata={"description": "The approving officer's id, as claimed."})
    decided_by_client = fields.String(allow_none=True, metadata={
        "description": "The security client that approved it (authenticated; never the one that filed it)."})
    decided_at = fields.AwareDateTime(allow_none=True)


class KeyList(Schema):
    items = fields.List(fields.Nested(KeyView))


class ApprovalList(Schema):
    items = fields.List(fields.Nested(ApprovalView))


class OperationResult(Schema):
    """What an operation did: the keys it changed; for revoke/destroy, the approval filed or executed."""

    class Meta:
        ordered = True

    keys = fields.List(fields.Nested(KeyView))
    approval = fields.Nested(ApprovalView, allow_none=True)


class RewrapResultView(Schema):
    storage_kid = fields.String()
    key_files = fields.Integer()
    evidence_rows = fields.Integer()
