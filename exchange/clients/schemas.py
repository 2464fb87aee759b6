"""Schemas of agency clients: what security officers send and see."""

from __future__ import annotations

import base64
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from exchange.clients.models import CLIENT_STATUSES, CURVE_FOR_PURPOSE, KEY_PURPOSES
from exchange.protocol.policy import AGENCY_SCOPES, ALL_SCOPES
from exchange.web.schemas import Changes, PagingQuery, Strict

CLIENT_ID = validate.Regexp(r"^[a-z0-9][a-z0-9._-]{2,63}$", error="Use 3-64 lowercase letters, digits, . _ -")
AGENCIES = tuple(AGENCY_SCOPES)


class PublicJwkSchema(Strict):
    """A public OKP JWK (RFC 8037): Ed25519 for `auth`/`sign`, X25519 for `enc`. A private `d` is refused."""

    kty = fields.String(required=True, validate=validate.Equal("OKP"))
    crv = fields.String(required=True, validate=validate.OneOf(("Ed25519", "X25519")))
    x = fields.String(required=True, validate=validate.Length(min=43, max=43))
    kid = fields.String()
    use = fields.String()
    alg = fields.String()
    key_ops = fields.List(fields.String())

    @validates_schema
    def _x_is_32_bytes(self, data: dict[str, Any], **_: Any) -> None:
        try:
            raw = base64.urlsafe_b64decode(data["x"] + "=")
        except (ValueError, KeyError) as e:
            raise ValidationError("x must be base64url without padding.", field_name="x") from e
        if len(raw) != 32:
            raise ValidationError("x must encode 32 bytes.", field_name="x")


class ClientKeyInputSchema(Strict):
    purpose = fields.String(required=True, validate=validate.OneOf(KEY_PURPOSES))
    jwk = fields.Nested(PublicJwkSchema, required=True)

    @validates_schema
    def _curve_fits_purpose(self, data: dict[str, Any], **_: Any) -> None:
        expected = CURVE_FOR_PURPOSE[data["purpose"]]
        if data["jwk"]["crv"] != expected:
            raise ValidationError(f"A {data['purpose']} key must be {expected}.", field_name="jwk")


class OwnKeyRotationSchema(ClientKeyInputSchema):
    proof = fields.String(required=True, validate=validate.Length(min=1, max=4096), metadata={"description": (
        "JWS (EdDSA, kid) by your current active key of this purpose (your sign key for an enc key) over "
        "{iss: client_id, aud: this endpoint's URL, new_kid: the new key's RFC 7638 thumbprint, iat, jti}.")})


class ClientCreateSchema(Strict):
    client_id = fields.String(required=True, validate=CLIENT_ID)
    agency = fields.String(required=True, validate=validate.OneOf(AGENCIES))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    scopes = fields.List(fields.String(validate=validate.OneOf(ALL_SCOPES)), required=True,
                         validate=validate.Length(min=1))
    keys = fields.List(fields.Nested(ClientKeyInputSchema), required=True, validate=validate.Length(min=1, max=12))

    @validates_schema
    def _scopes_of_agency(self, data: dict[str, Any], **_: Any) -> None:
        foreign = set(data.get("scopes", ())) - AGENCY_SCOPES.get(data.get("agency", ""), frozenset())
        if foreign:
            raise ValidationError(f"Not a scope of this agency: {', '.join(sorted(foreign))}.", field_name="scopes")
        if not any(k["purpose"] == "auth" for k in data.get("keys", ())):
            raise ValidationError("Register at least one auth key.", field_name="keys")


class ClientUpdateSchema(Changes):
    name = fields.String(validate=validate.Length(min=1, max=200))
    scopes = fields.List(fields.String(validate=validate.OneOf(ALL_SCOPES)), validate=validate.Length(min=1))
    status = fields.String(validate=validate.OneOf(CLIENT_STATUSES))
    status_reason = fields.String(validate=validate.Length(min=1, max=2000))

    @validates_schema
    def _reason_with_suspension(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("status") == "suspended" and not data.get("status_reason"):
            raise ValidationError("Say why the client is suspended.", field_name="status_reason")


class KeyRevocationSchema(Strict):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class ClientKeyView(Schema):
    class Meta:
        ordered = True

    purpose = fields.String()
    kid = fields.String()
    crv = fields.String()
    x = fields.String()
    status = fields.String()
    created_at = fields.AwareDateTime()
    revoked_at = fields.AwareDateTime(allow_none=True)
    revoked_reason = fields.String(allow_none=True)


class ClientView(Schema):
    class Meta:
        ordered = True

    client_id = fields.String()
    agency = fields.String()
    name = fields.String()
    scopes = fields.List(fields.String())
    status = fields.String()
    status_reason = fields.String(allow_none=True)
    keys = fields.List(fields.Nested(ClientKeyView))
    created_by = fields.String(allow_none=True)
    updated_by = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    version = fields.Integer()


class ClientQuery(PagingQuery):
    agency = fields.String(validate=validate.OneOf(AGENCIES))
    status = fields.String(validate=validate.OneOf(CLIENT_STATUSES))


ClientPage = Schema.from_dict(
    {"items": fields.List(fields.Nested(ClientView)), "page": fields.Integer(), "page_size": fields.Integer(),
     "total": fields.Integer()},
    name="ClientPage",
)
