"""Marshmallow schemas of the audit endpoints: strict query arguments, and what auditors get back.

Bytes travel as b64 (base64url without padding, protocol.md): the leaf exactly as stored, hashes as 32 bytes.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from exchange.audit.entries import ACTIONS, OUTCOMES
from exchange.audit.services import MAX_PAGE
from exchange.web.schemas import Strict

INDEX = validate.Range(min=0)


class EntriesQuery(Strict):
    start = fields.Integer(required=True, validate=INDEX, metadata={"description": "First index."})
    end = fields.Integer(validate=INDEX, metadata={
        "description": f"One past the last index (default: the size of the log); at most {MAX_PAGE} a call."})


class ExportQuery(Strict):
    start = fields.Integer(load_default=0, validate=INDEX)
    end = fields.Integer(validate=INDEX, metadata={"description": "Default: the size of the checkpoint exported."})


class InclusionQuery(Strict):
    index = fields.Integer(required=True, validate=INDEX)
    size = fields.Integer(required=True, validate=validate.Range(min=1), metadata={
        "description": "The tree size, normally that of a checkpoint you hold."})


class ConsistencyQuery(Strict):
    old = fields.Integer(required=True, validate=INDEX)
    new = fields.Integer(required=True, validate=INDEX)


class SearchQuery(Strict):
    agency = fields.String(validate=validate.Length(min=1, max=16))
    client_id = fields.String(validate=validate.Length(min=1, max=128))
    action = fields.String(validate=validate.Length(min=1, max=32), metadata={
        "description": f"One of {', '.join(sorted(ACTIONS))}, client.*, key.*."})
    outcome = fields.String(validate=validate.OneOf(OUTCOMES))
    purpose = fields.String(validate=validate.Length(min=1, max=64))
    record_id = fields.String(validate=validate.Length(min=1, max=64))
    time_from = fields.AwareDateTime(data_key="from", metadata={"description": "Entries at or after (RFC 3339)."})
    time_to = fields.AwareDateTime(data_key="to", metadata={"description": "Entries before (RFC 3339)."})
    after = fields.Integer(validate=INDEX, metadata={"description": "Only entries after this index (paging)."})
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_PAGE))


class AuditEntrySchema(Schema):
    index = fields.Integer(required=True)
    leaf = fields.String(required=True, metadata={"description": "The entry's RFC 8785 bytes, b64."})
    leaf_hash = fields.String(allow_none=True, metadata={
        "description": "SHA-256(0x00 || leaf) as stored in the tree when the entry was appended, b64."})


class EntriesPageSchema(Schema):
    start = fields.Integer(required=True)
    end = fields.Integer(required=True, metadata={"description": "One past the last entry returned."})
    size = fields.Integer(required=True, metadata={"description": "The size of the log when read."})
    entries = fields.List(fields.Nested(AuditEntrySchema), required=True)


class SearchResultSchema(Schema):
    items = fields.List(fields.Nested(AuditEntrySchema), required=True)
    next_after = fields.Integer(allow_none=True, metadata={
        "description": "Pass as `after` for the next page; null on the last page."})


class InclusionProofSchema(Schema):
    index = fields.Integer(required=True)
    size = fields.Integer(required=True)
    leaf_hash = fields.String(required=True)
    hashes = fields.List(fields.String(), required=True, metadata={"description": "RFC 6962 audit path, b64."})


class ConsistencyProofSchema(Schema):
    old = fields.Integer(required=True)
    new = fields.Integer(required=True)
    hashes = fields.List(fields.String(), required=True, metadata={"description": "RFC 6962 consistency proof, b64."})


class ReceiptQuery(Strict):
    since = fields.Integer(validate=validate.Range(min=1), metadata={
        "description": "The size of the checkpoint you kept from before: adds the consistency proof from it."})


class ReceiptProofSchema(Schema):
    """Everything a partner needs to check, offline, that one of its own calls is in the log and the log only grew."""

    index = fields.Integer(required=True)
    leaf_hash = fields.String(required=True, metadata={"description": "b64url SHA-256(0x00 || leaf), as in the "
                                                                      "response's audit receipt."})
    checkpoint = fields.String(required=True, metadata={"description": "The latest C2SP signed checkpoint note."})
    size = fields.Integer(required=True)
    inclusion = fields.List(fields.String(), required=True, metadata={"description": "RFC 6962 audit path, b64."})
    since = fields.Integer(allow_none=True)
    consistency = fields.List(fields.String(), allow_none=True,
                              metadata={"description": "RFC 6962 consistency proof from `since`, b64."})
