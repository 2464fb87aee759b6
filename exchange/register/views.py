"""HTTP resources of the register. Thin: parse (schemas), ask the service, dump the caller's agency view.

Every route here is under `/v1/` and so runs after the caller seam (`exchange.web.caller`) has authenticated the
request. The response schema depends on the caller's agency (need to know); the OpenAPI document lists each agency's
view as its own schema under `oneOf`.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from flask import Response, g, jsonify, url_for
from flask.views import MethodView
from marshmallow import RAISE, Schema

from exchange.db import Record, db
from exchange.envelope.http import EnvelopeBlueprint
from exchange.identity import Caller
from exchange.protocol.errors import (
    Conflict,
    InvalidTransition,
    NotPermitted,
)
from exchange.register import schemas as s
from exchange.register.errors import DuplicateRegisterNumber, InvalidState, RecordNotFound
from exchange.register.models import (
    BorderCrossing,
    BorderInstruction,
    HotlineContact,
    ProsecutorialDecision,
    Returnee,
    VettingAssessment,
)
from exchange.register.services import RETURNEE_COLLECTIONS, Page, PageRequest, RegisterService
from exchange.web.audit_context import touch
from exchange.web.caller import current_caller
from exchange.web.conditional import if_match
from exchange.web.guards import protected
from exchange.web.openapi import if_match_header, raises

blp = EnvelopeBlueprint("register", __name__, url_prefix="/v1", description="The returnee register and its records.")

AgencyViews = Mapping[str, type[Schema]]

RETURNEE_VIEWS: AgencyViews = s.views_of(Returnee)


def service() -> RegisterService:
    return RegisterService(session=db.session, request_id=g.get("request_id"))


@functools.cache
def view_instance(view: type[Schema]) -> Schema:
    """One instance per view schema, built on first use and shared: dumping keeps no state on the schema (marshmallow
    builds nested schemas once per instance, lazily, and an identical one if two threads race to it)."""
    return view()


@functools.cache
def returnee_collections(view: type[Schema]) -> tuple[str, ...]:
    """The record collections of a returnee that `view` shows: the service loads those and no other."""
    shown = set(view._declared_fields)
    if "active_border_instruction" in shown:
        shown.add("border_instructions")
    return tuple(name for name in RETURNEE_COLLECTIONS if name in shown)


def view_for(caller: Caller, views: AgencyViews) -> type[Schema]:
    view = views.get(caller.agency)
    if view is None:  # the service's policy check refuses first; this is the second lock on the same door
        raise NotPermitted(f"Agency {caller.agency!r} has no view of this record.")
    return view


def dump_for(caller: Caller, views: AgencyViews, obj: Any) -> dict[str, Any]:
    data: dict[str, Any] = view_instance(view_for(caller, views)).dump(obj)
    return data


def record_response(caller: Caller, views: AgencyViews, record: Record, *, status: int = 200) -> Response:
    touch(record.id, getattr(record, "returnee_id", None))
    data = dump_for(caller, views, record)
    # `view`: whose need-to-know view this is (the OpenAPI discriminator between the agencies' views)
    response = jsonify({"view": caller.agency, **data})
    response.status_code = status
    response.headers["ETag"] = etag(caller, record, data)
    return response


def etag(caller: Caller, record: Record, shown: Mapping[str, Any]) -> str:
    """The record's ETag as the caller's agency sees it.

    Where the view shows the record's `version` (it does exactly when the agency sees all of the record's own fields,
    policy.shown; every writer of a kind does), the ETag is that version, `"<version>"`, and writes carry it in
    `If-Match`. Where it does not, the ETag is a digest of exactly what the agency was shown (`"v-<hex>"`): it
    changes when something in its view changes and never when another agency edits a field it may not see. A digest
    never matches a version, so it cannot serve a write (412); no agency writes a kind it sees only in part.
    """
    if "version" in shown:
        return f'"{record.version}"'
    canonical = json.dumps(shown, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return f'"v-{hashlib.sha256(canonical.encode()).hexdigest()[:32]}"'


def page_response(caller: Caller, views: AgencyViews, page: Page[Any]) -> Response:
    touch(*(item.id for item in page.items))
    return jsonify(
        {
            "view": caller.agency,
            "items": [dump_for(caller, views, item) for item in page.items],
            "page": page.page,
            "page_size": page.page_size,
            "total": page.total,
        }
    )


def paging(query: Mapping[str, Any]) -> tuple[PageRequest, dict[str, Any]]:
    filters = dict(query)
    return PageRequest(page=filters.pop("page"), page_size=filters.pop("page_size")), filters


def views_doc(status: int, views: AgencyViews, description: str, *, page: bool = False) -> dict[str, Any]:
    """OpenAPI for a response whose schema depends on the caller's agency: one alternative per distinct view, each
    with the `view` member naming the agencies that get it (a discriminator: no body matches two alternatives). A
    single record carries its version in `ETag`."""
    by_schema: dict[str, list[str]] = {}
    for agency, view in views.items():
        by_schema.setdefault(_component_name(s.page_of(view) if page else view), []).append(agency)
    mapping = {agency: f"#/components/schemas/{name}{VIEW_SUFFIX}" for name, agencies in by_schema.items()
               for agency in agencies}
    refs = [{"$ref": f"#/components/schemas/{name}{VIEW_SUFFIX}"} for name in by_schema]
    schema: dict[str, Any] = refs[0] if len(refs) == 1 else {
        "oneOf": refs, "discriminator": {"propertyName": "view", "mapping": mapping}}
    agencies = ", ".join(f"{agency}: {name}" for name, names in by_schema.items() for agency in names)
    doc: dict[str, Any] = {
        "description": f"{description} The view depends on the caller's agency ({agencies}); its `view` member "
                       "names the agency.",
        "content": {"application/json": {"schema": schema}},
    }
    if not page:
        doc["headers"] = {"ETag": {"description": 'The record\'s version, such as "3": send it back in If-Match to '
                                                  "change the record.", "schema": {"type": "string"}}}
    return {"responses": {str(status): doc}}


VIEW_SUFFIX = "ForAgency"


def agency_view_components(components: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The top-level alternatives `views_doc` names: each view (or page of views), from its OpenAPI component in
    `components`, with the required `view` member naming the agencies that get it. A copy, not an `allOf`: the views
    allow no other member, so `view` must be one of their own."""
    built: dict[str, dict[str, Any]] = {}
    for mapping in [RETURNEE_VIEWS, *(r.views for r in RESOURCES)]:
        for page in (False, True):
            by_schema: dict[str, list[str]] = {}
            for agency, view in mapping.items():
                by_schema.setdefault(_component_name(s.page_of(view) if page else view), []).append(agency)
            for name, agencies in by_schema.items():
                schema = copy.deepcopy(components[name])
                schema["properties"] = {"view": {
                    "type": "string", "enum": agencies,
                    "description": "The agency whose need-to-know view this is (the caller's)."},
                    **schema.get("properties", {})}
                schema["required"] = ["view", *schema.get("required", [])]
                built[f"{name}{VIEW_SUFFIX}"] = schema
    return built


def _component_name(schema: type[Schema]) -> str:
    return schema.__name__.removesuffix("Schema")


def documented_views() -> list[type[Schema]]:
    """Every agency view, so that `create_app` can register them as OpenAPI components."""
    views: list[type[Schema]] = []
    for mapping in [RETURNEE_VIEWS, *(r.views for r in RESOURCES)]:
        for view in mapping.values():
            views += [view, s.page_of(view)]
    return list(dict.fromkeys(views))


# ---- returnees ------------------------------------------------------------------------------------------------------


READ = {"returnees:read", "returnees:screen"}  # the border reads its own (border) view with its screening scope
WRITE = {"returnees:write"}
# A transition request is a write to the register by any register agency; the lifecycle then decides whether this
# agency may make this move (409 invalid_transition otherwise, as domain.md says). An agency that makes no move by
# request (the border, the prosecutor) is refused before its returnee's status or version is looked at, in words
# that name neither.
TRANSITION = {"returnees:write", "crossings:write", "decisions:write"}


@blp.route("/returnees")
class Returnees(MethodView):
    @protected(scopes=READ)
    @raises(NotPermitted)
    @blp.arguments(s.ReturneeQuery, location="query", unknown=RAISE)
    @blp.doc(**views_doc(200, RETURNEE_VIEWS, "A page of returnees.", page=True))
    def get(self, query: dict[str, Any]) -> Response:
        """List returnees (paged, filtered)"""
        caller = current_caller()
        paging_request, filters = paging(query)
        return page_response(caller, RETURNEE_VIEWS, service().list_records(caller, Returnee, filters, paging_request))

    @protected(scopes=WRITE)
    @raises(NotPermitted, DuplicateRegisterNumber, Conflict)
    @blp.arguments(s.ReturneeCreateSchema)
    @blp.doc(**views_doc(201, RETURNEE_VIEWS, "The registered returnee."))
    def post(self, data: dict[str, Any]) -> Response:
        """Register a returnee (interior)"""
        caller = current_caller()
        returnee = service().create_returnee(caller, data)
        response = record_response(caller, RETURNEE_VIEWS, returnee, status=201)
        response.headers["Location"] = url_for(".ReturneeItem", returnee_id=returnee.id)
        return response


@blp.route("/returnees/<uuid:returnee_id>")
class ReturneeItem(MethodView):
    @protected(scopes=READ)
    @raises(NotPermitted)
    @blp.doc(**views_doc(200, RETURNEE_VIEWS, "The returnee as the caller's agency may see it."))
    def get(self, returnee_id: uuid.UUID) -> Response:
        """Read a returnee (the caller's need-to-know view; ETag carries the version)"""
        caller = current_caller()
        # the agency's view decides which of the returnee's records are loaded (no view, no read: NotPermitted)
        collections = returnee_collections(RETURNEE_VIEWS[caller.agency]) if caller.agency in RETURNEE_VIEWS else None
        returnee = service().get(caller, Returnee, returnee_id, collections=collections)
        return record_response(caller, RETURNEE_VIEWS, returnee)

    @protected(scopes=WRITE)
    @raises(NotPermitted, DuplicateRegisterNumber, Conflict)
    @if_match_header(required=True)
    @blp.arguments(s.ReturneeUpdateSchema)
    @blp.doc(**views_doc(200, RETURNEE_VIEWS, "The changed returnee."))
    def patch(self, changes: dict[str, Any], returnee_id: uuid.UUID) -> Response:
        """Change a returnee's details (interior; If-Match required, 412 when stale)"""
        caller = current_caller()
        returnee = service().update_returnee(caller, returnee_id, if_match=if_match(required=True), changes=changes)
        return record_response(caller, RETURNEE_VIEWS, returnee)


@blp.route("/returnees/<uuid:returnee_id>/transitions")
class ReturneeTransitions(MethodView):
    @protected(scopes=TRANSITION)
    @raises(NotPermitted, InvalidTransition, Conflict)
    @if_match_header(required=False)
    @blp.arguments(s.TransitionSchema)
    @blp.doc(**views_doc(200, RETURNEE_VIEWS, "The returnee in its new status."))
    def post(self, data: dict[str, Any], returnee_id: uuid.UUID) -> Response:
        """Move a returnee to another status (409 invalid_transition when the lifecycle forbids it)"""
        caller = current_caller()
        returnee = service().transition(caller, returnee_id, to=data["to"], if_match=if_match(required=False))
        return record_response(caller, RETURNEE_VIEWS, returnee)


@blp.route("/screening")
class Screening(MethodView):
    @protected(scopes={"returnees:screen"})
    @raises(NotPermitted)
    @blp.arguments(s.ScreeningQuerySchema)
    @blp.response(200, s.ScreeningResultView)
    def post(self, query: dict[str, Any]) -> dict[str, Any]:
        """Screen a traveller by document number, or by name and birth date (border)"""
        caller = current_caller()
        if "document_number" in query:
            hits = service().screen_by_document(caller, query["document_number"])
        else:
            hits = service().screen_by_name(
                caller, name=query["name"], birth_date=query.get("birth_date"), limit=query["limit"],
                min_score=query["min_score"], collections=returnee_collections(s.BorderReturneeView),
            )
        registry = service()
        registry.report_hits(caller, hits)
        touch(*(hit.returnee.id for hit in hits))
        return {"candidates": hits}


@blp.route("/screening/manifests")
class ScreeningManifests(MethodView):
    @protected(scopes={"returnees:screen"})
    @blp.arguments(s.ManifestSchema)
    @blp.response(200, s.ManifestResultView)
    def post(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Screen a manifest of up to 500 travellers (advance passenger information; border)"""
        caller = current_caller()
        travellers = manifest["travellers"]
        answers = service().screen_manifest(caller, travellers, limit=manifest["limit"],
                                            min_score=manifest["min_score"])
        touch(*(hit.returnee.id for hits in answers for hit in hits))  # one audit entry, every record returned
        return {
            "travellers": [{"index": index, **traveller, "candidates": hits}
                           for index, (traveller, hits) in enumerate(zip(travellers, answers, strict=True))],
            "screened": len(travellers),
            "with_candidates": sum(1 for hits in answers if hits),
        }


# ---- the records of a returnee: one shape, five kinds ---------------------------------------------------------------


class RecordResource:
    """Collection (list, create) and item (read, update) routes for one record kind."""

    def __init__(
        self,
        *,
        path: str,
        model: type[Record],
        noun: str,
        create_schema: type[Schema],
        update_schema: type[Schema],
        query_schema: type[Schema],
        views: AgencyViews,
        create: Callable[[RegisterService, Caller, dict[str, Any]], Record],
        create_summary: str,
        read_scopes: set[str],
        create_scopes: set[str],
        update_scopes: set[str],
    ) -> None:
        self.views = views
        self.model = model
        resource = self

        class Collection(MethodView):
            @protected(scopes=read_scopes)
            @raises(NotPermitted)
            @blp.arguments(query_schema, location="query", unknown=RAISE)
            @blp.doc(**views_doc(200, views, f"A page of {noun}.", page=True))
            def get(self, query: dict[str, Any]) -> Response:
                caller = current_caller()
                paging_request, filters = paging(query)
                return page_response(caller, views, service().list_records(caller, model, filters, paging_request))

            @protected(scopes=create_scopes)
            @raises(NotPermitted, RecordNotFound, InvalidState, InvalidTransition, Conflict)
            @blp.arguments(create_schema)
            @blp.doc(**views_doc(201, views, "The recorded record."))
            def post(self, data: dict[str, Any]) -> Response:
                caller = current_caller()
                record = create(service(), caller, data)
                response = record_response(caller, views, record, status=201)
                response.headers["Location"] = url_for(f".{resource.item_endpoint}", record_id=record.id)
                return response

            get.__doc__ = f"List {noun} (paged, filtered)"
            post.__doc__ = create_summary

        class Item(MethodView):
            @protected(scopes=read_scopes)
            @raises(NotPermitted)
            @blp.doc(**views_doc(200, views, "The record as the caller's agency may see it."))
            def get(self, record_id: uuid.UUID) -> Response:
                caller = current_caller()
                return record_response(caller, views, service().get(caller, model, record_id))

            @protected(scopes=update_scopes)
            @raises(NotPermitted, InvalidState, Conflict)
            @if_match_header(required=True)
            @blp.arguments(update_schema)
            @blp.doc(**views_doc(200, views, "The changed record."))
            def patch(self, changes: dict[str, Any], record_id: uuid.UUID) -> Response:
                caller = current_caller()
                record = service().update_record(
                    caller, model, record_id, if_match=if_match(required=True), changes=changes
                )
                return record_response(caller, views, record)

            get.__doc__ = f"Read one of the {noun} (ETag carries the version)"
            patch.__doc__ = f"Change one of the {noun} (If-Match required, 412 when stale)"

        name = "".join(part.title() for part in path.split("-"))
        self.item_endpoint = f"{name}Item"
        blp.route(f"/{path}", endpoint=name)(Collection)
        blp.route(f"/{path}/<uuid:record_id>", endpoint=self.item_endpoint)(Item)


RESOURCES = [
    RecordResource(
        path="hotline-contacts", model=HotlineContact, noun="hotline contacts",
        create_schema=s.HotlineContactCreateSchema, update_schema=s.HotlineContactUpdateSchema,
        query_schema=s.HotlineContactQuery,
        views=s.views_of(HotlineContact),
        create=RegisterService.record_hotline_contact,
        create_summary="Record a hotline contact, about a known returnee or registering a new one (interior)",
        read_scopes={"returnees:read"}, create_scopes=WRITE, update_scopes=WRITE,
    ),
    RecordResource(
        path="border-instructions", model=BorderInstruction, noun="border instructions",
        create_schema=s.BorderInstructionCreateSchema, update_schema=s.BorderInstructionUpdateSchema,
        query_schema=s.BorderInstructionQuery,
        views=s.views_of(BorderInstruction),
        create=RegisterService.issue_border_instruction,
        create_summary="Issue a border instruction; ASSIST_RETURN makes a reported returnee expected (interior)",
        read_scopes=READ, create_scopes=WRITE, update_scopes=WRITE,
    ),
    RecordResource(
        path="border-crossings", model=BorderCrossing, noun="border crossings",
        create_schema=s.BorderCrossingCreateSchema, update_schema=s.BorderCrossingUpdateSchema,
        query_schema=s.BorderCrossingQuery,
        views=s.views_of(BorderCrossing),
        create=RegisterService.record_crossing,
        create_summary="Record a crossing; an entry makes a reported or expected returnee arrived (border)",
        read_scopes=READ, create_scopes={"crossings:write"}, update_scopes={"crossings:write", "returnees:write"},
    ),
    RecordResource(
        path="vetting-assessments", model=VettingAssessment, noun="vetting assessments",
        create_schema=s.VettingAssessmentCreateSchema, update_schema=s.VettingAssessmentUpdateSchema,
        query_schema=s.VettingAssessmentQuery,
        views=s.views_of(VettingAssessment),
        create=RegisterService.record_vetting,
        create_summary="Record a vetting assessment of a returnee under vetting (interior)",
        read_scopes={"returnees:read"}, create_scopes=WRITE, update_scopes=WRITE,
    ),
    RecordResource(
        path="prosecutorial-decisions", model=ProsecutorialDecision, noun="prosecutorial decisions",
        create_schema=s.ProsecutorialDecisionCreateSchema, update_schema=s.ProsecutorialDecisionUpdateSchema,
        query_schema=s.ProsecutorialDecisionQuery,
        views=s.views_of(ProsecutorialDecision),
        create=RegisterService.record_decision,
        create_summary="Record a prosecutorial decision on a returnee under review (prosecutor)",
        read_scopes={"returnees:read"}, create_scopes={"decisions:write"}, update_scopes={"decisions:write"},
    ),
]
