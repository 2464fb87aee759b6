"""The auditors' endpoints under `/v1/audit/` (audit.md "Endpoints"). Thin: parse, ask the log, dump.

Each needs scope `audit:read` and a purpose of use of the caller's agency (`protected`); then, whatever its token
says, only the `auditor` agency may read the log (403 `not_permitted`). Every call, allowed or not, is itself
recorded (`audit.read` or `deny`) by the recorder like any other `/v1/` call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from flask import Flask, Response, current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE

from exchange.audit import recorder
from exchange.audit import schemas as s
from exchange.audit.services import AuditLog, SearchFilters, entry_json, export_lines
from exchange.db import db
from exchange.protocol.audit_errors import CheckpointPending
from exchange.protocol.encoding import b64url
from exchange.protocol.errors import NotFound, NotPermitted, ValidationFailed
from exchange.protocol.policy import ALL_SCOPES
from exchange.web.caller import current_caller
from exchange.web.guards import protected
from exchange.web.openapi import raises

blp = Blueprint("audit", __name__, url_prefix="/v1/audit",
                description="The tamper-evident audit log: checkpoints, entries, proofs, search, export (auditors).")

AUDITORS = frozenset({"auditor"})
SCOPES = {"audit:read"}
F = TypeVar("F", bound=Callable[..., Any])
JSON_LINES = "application/jsonl"


def auditors_only(view: F) -> F:
    """Need to know, under the scope check: whatever scopes a token carries, only auditors read the log."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_caller().agency not in AUDITORS:
            raise NotPermitted("Only auditors may read the audit log.")
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _app() -> Flask:
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return app


def log() -> AuditLog:
    return AuditLog(session=db.session)


def _text(description: str, media_type: str) -> dict[str, Any]:
    return {"responses": {"200": {"description": description,
                                  "content": {media_type: {"schema": {"type": "string"}}}}}}


@blp.route("/checkpoint")
class CheckpointResource(MethodView):
    @protected(scopes=SCOPES)
    @raises(NotPermitted)
    @auditors_only
    @blp.doc(**_text("A C2SP tlog-checkpoint signed note by the exchange's audit key.", "text/plain"))
    def get(self) -> Response:
        """The latest signed checkpoint (a new one is signed first if the log grew)"""
        return Response(recorder.published(_app(), log()).note, mimetype="text/plain")


@blp.route("/entries")
class Entries(MethodView):
    @protected(scopes=SCOPES)
    @raises(NotPermitted)
    @auditors_only
    @blp.arguments(s.EntriesQuery, location="query", unknown=RAISE)
    @blp.response(200, s.EntriesPageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Entries from start to end, at most 1000 a call: the leaf bytes as stored"""
        audit_log = log()
        size = audit_log.size()
        entries = audit_log.entries(query["start"], query.get("end", size))
        return {"start": query["start"], "end": query["start"] + len(entries), "size": size,
                "entries": [entry_json(e) for e in entries]}


@blp.route("/proofs/inclusion")
class InclusionProofResource(MethodView):
    @protected(scopes=SCOPES)
    @raises(NotPermitted)
    @auditors_only
    @blp.arguments(s.InclusionQuery, location="query", unknown=RAISE)
    @blp.response(200, s.InclusionProofSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """The inclusion proof of an entry in the tree of a given size (RFC 6962 audit path)"""
        proof, leaf_hash = log().inclusion_proof(query["index"], query["size"])
        return {"index": proof.index, "size": proof.size, "leaf_hash": b64url(leaf_hash),
                "hashes": [b64url(h) for h in proof.hashes]}


@blp.route("/proofs/consistency")
class ConsistencyProofResource(MethodView):
    @protected(scopes=SCOPES)
    @raises(NotPermitted)
    @auditors_only
    @blp.arguments(s.ConsistencyQuery, location="query", unknown=RAISE)
    @blp.response(200, s.ConsistencyProofSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """The consistency proof between two tree sizes (RFC 6962)"""
        proof = log().consistency_proof(query["old"], query["new"])
        return {"old": proof.old, "new": proof.new, "hashes": [b64url(h) for h in proof.hashes]}


@blp.route("/receipts/<int:index>")
class OwnEntryReceipt(MethodView):
    @protected(scopes=ALL_SCOPES)
    @raises(NotFound)
    @blp.arguments(s.ReceiptQuery, location="query", unknown=RAISE)
    @blp.response(200, s.ReceiptProofSchema)
    def get(self, query: dict[str, Any], index: int) -> dict[str, Any]:
        """Proof that one of your own calls is in the log (any agency, for its own entries only)

        The latest checkpoint (a new one is signed first if the log grew), the entry's inclusion proof in it and,
        with `since`, the consistency proof from the checkpoint you kept. Hashes only: nothing of the entry or of
        anyone else's. Another client's entry, or none, is 404.
        """
        audit_log = log()
        if audit_log.client_of(index) != current_caller().client_id:
            raise NotFound("No entry of yours at this index.")
        latest = recorder.published(_app(), audit_log)
        if index >= latest.size or not latest.witnessed:  # a proof against a checkpoint not yet witnessed would
            raise CheckpointPending()  # fail a partner that requires the quorum: come back once it is cosigned
        proof, leaf_hash = audit_log.inclusion_proof(index, latest.size)
        body: dict[str, Any] = {"index": index, "leaf_hash": b64url(leaf_hash), "checkpoint": latest.note,
                                "size": latest.size, "inclusion": [b64url(h) for h in proof.hashes]}
        since = query.get("since")
        if since is not None:
            if since > latest.size:
                raise ValidationFailed(errors={"since": [f"The log has {latest.size} entries; it never shrinks."]})
            consistency = audit_log.consistency_proof(since, latest.size)
            body.update(since=since, consistency=[b64url(h) for h in consistency.hashes])
        return body


@blp.route("/search")
class Search(MethodView):
    @protected(scopes=SCOPES)
    @raises(NotPermitted)
    @auditors_only
    @blp.arguments(s.SearchQuery, location="query", unknown=RAISE)
    @blp.response(200, s.SearchResultSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Entries matching every filter given, in index order (page with after)"""
        limit, after = query.pop("limit"), query.pop("after", None)
        items = log().search(SearchFilters(**query), after=after, limit=limit)
        return {"items": [entry_json(e) for e in items],
                "next_after": items[-1].index if len(items) == limit else None}


@blp.route("/export")
class Export(MethodView):
    @protected(scopes=SCOPES)
    @raises(NotPermitted, ValidationFailed)
    @auditors_only
    @blp.arguments(s.ExportQuery, location="query", unknown=RAISE)
    @blp.doc(**_text("JSON Lines: a header with the signed checkpoint, then one entry per line.", JSON_LINES))
    def get(self, query: dict[str, Any]) -> Response:
        """Export entries as JSON Lines, streamed, with the checkpoint that covers them"""
        app = _app()
        audit_log = log()
        checkpoint = recorder.published(app, audit_log)
        start, end = query["start"], query.get("end", checkpoint.size)
        if end > checkpoint.size:
            raise ValidationFailed(errors={"end": [f"The latest checkpoint covers {checkpoint.size} entries."]})
        if start > end:
            raise ValidationFailed(errors={"start": ["Must be at most end."]})
        note, factory = checkpoint.note, app.extensions["exchange.sessionmaker"]

        def lines() -> Iterator[str]:
            # The body streams after the request has ended (its entry committed, its session closed): it reads
            # with a session of its own, closed when the last line is sent or the client goes away.
            with factory() as session:
                yield from export_lines(AuditLog(session=session), note=note, start=start, end=end)

        return Response(lines(), mimetype=JSON_LINES)
