"""Marshmallow schemas: what callers send (strict: unknown fields are refused) and what each agency sees.

Need to know lives here as much as in `policy.py`: every agency has its own view schema of a returnee, and a field an
agency may not see is simply not in its schema, so it is absent from the response and from the OpenAPI document.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_dump, validate, validates_schema

from exchange.db import Record, utcnow
from exchange.register import models as m
from exchange.register import policy
from exchange.register.transliteration import parse_partial_date
from exchange.web.schemas import Changes, PagingQuery, Strict

COUNTRY = validate.Regexp(r"^[A-Z]{2}$", error="Use an ISO 3166-1 alpha-2 code such as TJ.")
OFFICER = validate.Length(min=1, max=64)
SHORT = validate.Length(min=1, max=200)
LONG = validate.Length(min=1, max=20_000)


class PartialDate(fields.String):
    """ISO 8601 date that may be partial: `1988`, `1988-04` or `1988-04-12`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text: str = super()._deserialize(value, attr, data, **kwargs)
        try:
            parse_partial_date(text)
        except ValueError as e:
            raise ValidationError("Use YYYY, YYYY-MM or YYYY-MM-DD with a real date.") from e
        return text


class IsoDate(fields.Date):
    """A full ISO date, validated on the way in and kept as its ISO string (lists of documents are stored as JSON)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        return super()._deserialize(value, attr, data, **kwargs).isoformat()

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value if isinstance(value, str) or value is None else super()._serialize(value, attr, obj, **kwargs)


def _one_of(values: tuple[str, ...]) -> validate.OneOf:
    return validate.OneOf(values)


# ---- nested parts of a returnee -----------------------------------------------------------------------------------


class PersonNameSchema(Strict):
    given = fields.String(required=True, validate=SHORT)
    surname = fields.String(required=True, validate=SHORT)
    patronymic = fields.String(allow_none=True, validate=SHORT)
    full = fields.String(validate=validate.Length(min=1, max=600), metadata={"description": "Defaults to given, "
                                                                                           "patronymic and surname."})


class NameVariantSchema(Strict):
    value = fields.String(required=True, validate=SHORT)
    script = fields.String(required=True, validate=_one_of(("cyrl", "latn", "arab")))
    kind = fields.String(required=True, validate=_one_of(("transliteration", "alias", "kunya")))


class IdentificationSchema(Strict):
    category = fields.String(
        required=True, validate=_one_of(("national_id", "passport", "travel_document", "emergency_travel_document"))
    )
    id = fields.String(required=True, validate=validate.Length(min=1, max=40))
    issuer_country = fields.String(required=True, validate=COUNTRY)
    expires = IsoDate(allow_none=True)
    status = fields.String(load_default="valid", validate=_one_of(("valid", "lost", "seized", "expired")))


ConflictEpisodeSchema = Strict.from_dict(
    {
        "country": fields.String(required=True, validate=COUNTRY),
        "from": PartialDate(allow_none=True),
        "to": PartialDate(allow_none=True),
        "affiliation": fields.String(allow_none=True, validate=SHORT),
        "role": fields.String(allow_none=True, validate=SHORT),
    },
    name="ConflictEpisode",
)


class AccompanyingPersonSchema(Strict):
    relation = fields.String(required=True, validate=SHORT)
    full_name = fields.String(required=True, validate=SHORT)
    birth_date = PartialDate(allow_none=True)
    is_minor = fields.Boolean(required=True)


class _JsonList(fields.List[Any]):
    """A list stored as JSON: dates inside are kept as ISO strings."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        items: list[Any] = super()._deserialize(value, attr, data, **kwargs)
        return [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in item.items()} for item in items]


# ---- returnee input -----------------------------------------------------------------------------------------------


class ReturneeUpdateSchema(Changes):
    """Fields interior may change; status changes go through transitions, the register number never changes."""

    person_name = fields.Nested(PersonNameSchema)
    name_variants = _JsonList(fields.Nested(NameVariantSchema), validate=validate.Length(max=50))
    birth_date = PartialDate(allow_none=True)
    birth_place = fields.String(allow_none=True, validate=SHORT)
    sex = fields.String(validate=_one_of(m.SEXES))
    citizenship = fields.String(validate=COUNTRY)
    identifications = _JsonList(fields.Nested(IdentificationSchema), validate=validate.Length(max=50))
    conflict_history = _JsonList(fields.Nested(ConflictEpisodeSchema), validate=validate.Length(max=50))
    accompanying_persons = _JsonList(fields.Nested(AccompanyingPersonSchema), validate=validate.Length(max=50))
    risk_level = fields.String(validate=_one_of(m.RISK_LEVELS))
    handling_code = fields.String(validate=_one_of(m.HANDLING_CODES))
    handling_restriction = fields.String(allow_none=True, validate=LONG)


class ReturneeCreateSchema(ReturneeUpdateSchema):
    require_changes = False
    register_number = fields.String(
        validate=validate.Regexp(r"^RT-\d{4}-\d{6}$", error="Use RT-YYYY-NNNNNN."),
        metadata={"description": "Allocated by the exchange when absent."},
    )
    person_name = fields.Nested(PersonNameSchema, required=True)
    citizenship = fields.String(required=True, validate=COUNTRY)


class TransitionSchema(Strict):
    to = fields.String(required=True, validate=_one_of(m.STATUSES))


# ---- records of a returnee: input ---------------------------------------------------------------------------------


class HotlineContactCreateSchema(Strict):
    returnee_id = fields.UUID(metadata={"description": "The returnee the contact is about; or give new_returnee."})
    new_returnee = fields.Nested(ReturneeCreateSchema, metadata={"description": "Registers a new returnee (reported)."})
    received_at = fields.AwareDateTime(required=True)
    channel = fields.String(required=True, validate=_one_of(m.CONTACT_CHANNELS))
    caller_relation = fields.String(allow_none=True, validate=SHORT)
    location_country = fields.String(allow_none=True, validate=COUNTRY)
    intent_to_return = fields.Boolean(required=True)
    summary = fields.String(required=True, validate=LONG)
    officer = fields.String(allow_none=True, validate=OFFICER)

    @validates_schema
    def _exactly_one_subject(self, data: dict[str, Any], **_: Any) -> None:
        if ("returnee_id" in data) == ("new_returnee" in data):
            raise ValidationError("Give exactly one of returnee_id or new_returnee.", field_name="returnee_id")


class HotlineContactUpdateSchema(Changes):
    received_at = fields.AwareDateTime()
    channel = fields.String(validate=_one_of(m.CONTACT_CHANNELS))
    caller_relation = fields.String(allow_none=True, validate=SHORT)
    location_country = fields.String(allow_none=True, validate=COUNTRY)
    intent_to_return = fields.Boolean()
    summary = fields.String(validate=LONG)
    officer = fields.String(allow_none=True, validate=OFFICER)


class BorderInstructionCreateSchema(Strict):
    returnee_id = fields.UUID(required=True)
    instruction = fields.String(required=True, validate=_one_of(m.INSTRUCTIONS))
    valid_from = fields.AwareDateTime(metadata={"description": "Defaults to now."})
    valid_until = fields.AwareDateTime(allow_none=True)
    reason = fields.String(required=True, validate=LONG, metadata={"description": "Never shown to the border."})
    issued_by = fields.String(allow_none=True, validate=OFFICER)

    @validates_schema
    def _window(self, data: dict[str, Any], **_: Any) -> None:
        start, end = data.get("valid_from"), data.get("valid_until")
        if start and end and end <= start:
            raise ValidationError("valid_until must be after valid_from.", field_name="valid_until")


class BorderInstructionUpdateSchema(Changes):
    valid_until = fields.AwareDateTime(allow_none=True)
    reason = fields.String(validate=LONG)


class DocumentPresentedSchema(Strict):
    category = fields.String(
        required=True, validate=_one_of(("national_id", "passport", "travel_document", "emergency_travel_document"))
    )
    id = fields.String(required=True, validate=validate.Length(min=1, max=40))
    issuer_country = fields.String(required=True, validate=COUNTRY)


class BorderCrossingCreateSchema(Strict):
    returnee_id = fields.UUID(allow_none=True, metadata={"description": "Absent for a traveller matching nobody."})
    crossing_point = fields.String(required=True, validate=validate.Length(min=1, max=100))
    direction = fields.String(required=True, validate=_one_of(m.DIRECTIONS))
    occurred_at = fields.AwareDateTime(required=True)
    documents_presented = _JsonList(fields.Nested(DocumentPresentedSchema), load_default=list)
    emergency_document_number = fields.String(allow_none=True, validate=validate.Length(min=1, max=40))
    outcome = fields.String(required=True, validate=_one_of(m.OUTCOMES))
    officer = fields.String(allow_none=True, validate=OFFICER)
    traveller_name = fields.String(allow_none=True, validate=validate.Length(min=1, max=600))
    traveller_birth_date = PartialDate(allow_none=True)

    @validates_schema
    def _unmatched_needs_identity(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("returnee_id") is None and not data.get("traveller_name"):
            raise ValidationError("An unmatched crossing needs the traveller's name.", field_name="traveller_name")


class BorderCrossingUpdateSchema(Changes):
    returnee_id = fields.UUID(metadata={"description": "Links an unmatched crossing to its returnee (interior)."})
    outcome = fields.String(validate=_one_of(m.OUTCOMES))
    officer = fields.String(allow_none=True, validate=OFFICER)
    emergency_document_number = fields.String(allow_none=True, validate=validate.Length(min=1, max=40))


class VettingAssessmentUpdateSchema(Changes):
    interviewed_at = fields.AwareDateTime()
    genuine_repentance = fields.String(validate=_one_of(m.REPENTANCE))
    risk_level = fields.String(validate=_one_of(m.RISK_LEVELS))
    findings = fields.String(validate=LONG)
    reintegration_plan = fields.String(allow_none=True, validate=LONG)
    source_reliability = fields.String(validate=_one_of(m.SOURCE_RELIABILITY))
    information_accuracy = fields.String(validate=_one_of(m.INFORMATION_ACCURACY))
    handling_code = fields.String(validate=_one_of(m.HANDLING_CODES))
    handling_restriction = fields.String(allow_none=True, validate=LONG)
    officer = fields.String(allow_none=True, validate=OFFICER)


class VettingAssessmentCreateSchema(VettingAssessmentUpdateSchema):
    require_changes = False
    returnee_id = fields.UUID(required=True)
    interviewed_at = fields.AwareDateTime(required=True)
    genuine_repentance = fields.String(required=True, validate=_one_of(m.REPENTANCE))
    risk_level = fields.String(required=True, validate=_one_of(m.RISK_LEVELS))
    findings = fields.String(required=True, validate=LONG)
    source_reliability = fields.String(required=True, validate=_one_of(m.SOURCE_RELIABILITY))
    information_accuracy = fields.String(required=True, validate=_one_of(m.INFORMATION_ACCURACY))


class ProsecutorialDecisionUpdateSchema(Changes):
    """The decision itself cannot change: a new decision is recorded instead."""

    statute = fields.String(allow_none=True, validate=SHORT)
    case_number = fields.String(validate=validate.Length(min=1, max=64))
    prosecutor = fields.String(allow_none=True, validate=OFFICER)
    notes = fields.String(allow_none=True, validate=LONG)


class ProsecutorialDecisionCreateSchema(ProsecutorialDecisionUpdateSchema):
    require_changes = False
    returnee_id = fields.UUID(required=True)
    decision = fields.String(required=True, validate=_one_of(m.DECISIONS))
    case_number = fields.String(required=True, validate=validate.Length(min=1, max=64))
    decided_at = fields.AwareDateTime(required=True)


# ---- views (output) -----------------------------------------------------------------------------------------------


class RecordView(Schema):
    class Meta:
        ordered = True

    id = fields.UUID(dump_only=True)
    version = fields.Integer(dump_only=True)
    created_at = fields.AwareDateTime(dump_only=True)
    updated_at = fields.AwareDateTime(dump_only=True)


class ChildView(RecordView):
    returnee_id = fields.UUID(dump_only=True)


class HotlineContactFields(ChildView):
    received_at = fields.AwareDateTime()
    channel = fields.String()
    caller_relation = fields.String(allow_none=True)
    location_country = fields.String(allow_none=True)
    intent_to_return = fields.Boolean()
    summary = fields.String()
    officer = fields.String(allow_none=True)


class BorderInstructionFields(ChildView):
    instruction = fields.String()
    valid_from = fields.AwareDateTime()
    valid_until = fields.AwareDateTime(allow_none=True)
    reason = fields.String()
    issued_by = fields.String(allow_none=True)


class BorderCrossingFields(RecordView):
    returnee_id = fields.UUID(allow_none=True)
    matched = fields.Boolean()
    flagged_for_interior = fields.Boolean()
    crossing_point = fields.String()
    direction = fields.String()
    occurred_at = fields.AwareDateTime()
    documents_presented = fields.List(fields.Nested(DocumentPresentedSchema))
    emergency_document_number = fields.String(allow_none=True)
    outcome = fields.String()
    officer = fields.String(allow_none=True)
    traveller_name = fields.String(allow_none=True)
    traveller_birth_date = fields.String(allow_none=True)


class VettingAssessmentFields(ChildView):
    interviewed_at = fields.AwareDateTime()
    genuine_repentance = fields.String()
    risk_level = fields.String()
    findings = fields.String()
    reintegration_plan = fields.String(allow_none=True)
    source_reliability = fields.String()
    information_accuracy = fields.String()
    handling_code = fields.String()
    handling_restriction = fields.String(allow_none=True)
    officer = fields.String(allow_none=True)


class ProsecutorialDecisionFields(ChildView):
    decision = fields.String()
    statute = fields.String(allow_none=True)
    case_number = fields.String()
    decided_at = fields.AwareDateTime()
    prosecutor = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)


class _ActiveInstruction(fields.Field[Any]):
    """The returnee's active border instruction, dumped with the given schema (computed at dump time)."""

    def __init__(self, schema: type[Schema], **kwargs: Any) -> None:
        super().__init__(dump_only=True, allow_none=True, **kwargs)
        self.view = schema()
        self.schema_cls = schema

    def _serialize(self, value: Any, attr: str | None, obj: m.Returnee, **kwargs: Any) -> Any:
        instruction = obj.active_border_instruction(utcnow())
        return self.view.dump(instruction) if instruction is not None else None


class ReturneeFields(RecordView):
    """Every field of a returnee, as the agencies that see it in full see it: the source of the agency views."""

    register_number = fields.String()
    person_name = fields.Nested(PersonNameSchema)
    name_variants = fields.List(fields.Nested(NameVariantSchema))
    birth_date = fields.String(allow_none=True)
    sex = fields.String()
    citizenship = fields.String()
    identifications = fields.List(fields.Nested(IdentificationSchema))
    handling_code = fields.String()
    handling_restriction = fields.String(allow_none=True, metadata={"description": "H3 restriction text."})
    status = fields.String()
    birth_place = fields.String(allow_none=True)
    conflict_history = fields.List(fields.Nested(ConflictEpisodeSchema))
    accompanying_persons = fields.List(fields.Nested(AccompanyingPersonSchema))
    risk_level = fields.String()


# ---- the agency views, derived from the need-to-know table (policy.NEED_TO_KNOW) ----------------------------------


class AgencyView(Schema):
    """Base of the generated views: drops the fields shown `UNLESS_H1` from a record handled H1."""

    class Meta:
        ordered = True

    unless_h1: tuple[str, ...] = ()

    @post_dump(pass_original=True)
    def _withhold_h1(self, data: dict[str, Any], original: Any, **_: Any) -> dict[str, Any]:
        if self.unless_h1 and getattr(original, "handling_code", None) == "H1":
            for name in self.unless_h1:
                data.pop(name, None)
        return data


# The full source of each kind's fields; the agency views take from it what the table shows them.
SOURCES: dict[type[Record], type[Schema]] = {
    m.Returnee: ReturneeFields,
    m.HotlineContact: HotlineContactFields,
    m.BorderInstruction: BorderInstructionFields,
    m.BorderCrossing: BorderCrossingFields,
    m.VettingAssessment: VettingAssessmentFields,
    m.ProsecutorialDecision: ProsecutorialDecisionFields,
}
_RELATED_KINDS: dict[str, type[Record]] = {
    "hotline_contacts": m.HotlineContact,
    "vetting_assessments": m.VettingAssessment,
    "border_crossings": m.BorderCrossing,
    "prosecutorial_decisions": m.ProsecutorialDecision,
}
_VIEWS: dict[tuple[type[Record], str], type[Schema]] = {}


def agency_view(model: type[Record], agency: str) -> type[Schema]:
    """The view schema of `model` for `agency`, built from the need-to-know table (one class per distinct view, so
    that agencies seeing the same share one OpenAPI component). A field the table shows but no rendering exists for
    fails here, at import, not in a response."""
    if (model, agency) in _VIEWS:
        return _VIEWS[(model, agency)]
    shown = policy.shown(model, agency)
    if not shown:
        raise KeyError(f"{agency} has no view of {model.__name__}")
    source = SOURCES[model]
    attrs: dict[str, Any] = {}
    for name, way in shown.items():
        if name in _RELATED_KINDS:
            attrs[name] = fields.List(fields.Nested(agency_view(_RELATED_KINDS[name], agency)))
        elif name == "active_border_instruction":
            full = way == policy.FULL
            attrs[name] = _ActiveInstruction(
                agency_view(m.BorderInstruction, agency) if full else _active_instruction_view(agency))
        elif way == policy.COARSE:  # status, in the agency's own terms
            attrs[name] = fields.Function(
                functools.partial(_status_in_terms, agency),
                metadata={"description": ", ".join(policy.COARSE_STATUS), "enum": list(policy.COARSE_STATUS)},
            )
        elif way in (policy.FULL, policy.UNLESS_H1):
            attrs[name] = copy.deepcopy(source._declared_fields[name])
        else:
            raise KeyError(f"no rendering of {model.__name__}.{name} as {way!r}")
    unless_h1 = tuple(name for name, way in shown.items() if way == policy.UNLESS_H1)
    for name in unless_h1:
        if name not in policy.BOOKKEEPING:
            attrs[f"{name}_withheld"] = fields.Function(
                lambda obj: obj.handling_code == "H1",
                metadata={"description": f"True when {name} is withheld (the record is handled H1)."},
            )
    attrs["unless_h1"] = unless_h1
    same = next((view for (kind, _), view in _VIEWS.items() if kind is model and view.__dict__.get("_shown") == shown),
                None)
    if same is not None and model is not m.Returnee:
        _VIEWS[(model, agency)] = same
        return same
    if model is m.Returnee:
        name = f"{agency.title()}ReturneeView"
    elif policy.sees_whole(model, agency):
        name = f"{model.__name__}View"
    else:
        name = f"{model.__name__}{agency.title()}View"
    attrs["_shown"] = shown
    view = type(name, (AgencyView,), attrs)
    _VIEWS[(model, agency)] = view
    return view


def _status_in_terms(agency: str, obj: m.Returnee) -> str:
    return policy.status_in_terms(agency, obj.status)


@functools.cache
def _active_instruction_view(agency: str) -> type[Schema]:
    """What an agency with a LIMITED view sees of the active instruction: its view of instructions, less the
    record's identity (the border: `instruction` and `valid_until`)."""
    record = agency_view(m.BorderInstruction, agency)
    shown = {n: copy.deepcopy(f) for n, f in record._declared_fields.items() if n not in ("id", "returnee_id")}
    return type(f"ActiveBorderInstruction{agency.title()}View", (AgencyView,), shown)


def active_instruction_view(agency: str) -> type[Schema]:
    """The LIMITED view of a returnee's instruction (events shape an instruction for the border with it)."""
    return _active_instruction_view(agency)


AGENCIES = ("interior", "border", "prosecutor")


def views_of(model: type[Record]) -> dict[str, type[Schema]]:
    """agency -> its view of `model`, for every agency that reads this kind."""
    return {agency: agency_view(model, agency) for agency in AGENCIES if policy.shown(model, agency)}


InteriorReturneeView = agency_view(m.Returnee, "interior")
BorderReturneeView = agency_view(m.Returnee, "border")
ProsecutorReturneeView = agency_view(m.Returnee, "prosecutor")


class ScreeningHitView(Schema):
    class Meta:
        ordered = True

    score = fields.Float()
    name_score = fields.Float(allow_none=True)
    birth_date_score = fields.Float(allow_none=True)
    matched_on = fields.String(metadata={"enum": ["document", "name"]})
    matched_value = fields.String()
    returnee = fields.Nested(BorderReturneeView)


class ScreeningResultView(Schema):
    candidates = fields.List(fields.Nested(ScreeningHitView))


class ScreeningQuerySchema(Strict):
    document_number = fields.String(validate=validate.Length(min=1, max=40))
    name = fields.String(validate=validate.Length(min=2, max=600))
    birth_date = PartialDate(allow_none=True)
    limit = fields.Integer(load_default=10, validate=validate.Range(min=1, max=50))
    min_score = fields.Float(load_default=70.0, validate=validate.Range(min=0, max=100))

    @validates_schema
    def _one_way(self, data: dict[str, Any], **_: Any) -> None:
        if ("document_number" in data) == ("name" in data):
            raise ValidationError("Search by document_number, or by name (with birth_date).", field_name="_schema")


class ManifestTravellerSchema(Strict):
    """One traveller of a manifest (advance passenger information)."""

    name = fields.String(required=True, validate=validate.Length(min=2, max=600))
    birth_date = PartialDate(allow_none=True)
    document_number = fields.String(allow_none=True, validate=validate.Length(min=1, max=40))
    nationality = fields.String(allow_none=True, validate=COUNTRY)
    flight = fields.String(allow_none=True, validate=validate.Length(min=1, max=32))
    crossing_point = fields.String(allow_none=True, validate=validate.Length(min=1, max=100))
    expected_arrival = fields.AwareDateTime(allow_none=True)

    @validates_schema
    def _where(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("flight") and not data.get("crossing_point"):
            raise ValidationError("Give the flight or the crossing point.", field_name="flight")


class ManifestSchema(Strict):
    travellers = fields.List(fields.Nested(ManifestTravellerSchema), required=True,
                             validate=validate.Length(min=1),
                             metadata={"description": "At most 500 (422 manifest_too_large beyond)."})
    limit = fields.Integer(load_default=5, validate=validate.Range(min=1, max=20),
                           metadata={"description": "Candidates per traveller."})
    min_score = fields.Float(load_default=70.0, validate=validate.Range(min=0, max=100))


class ManifestTravellerResultView(Schema):
    class Meta:
        ordered = True

    index = fields.Integer(metadata={"description": "The traveller's position in the manifest, from 0."})
    name = fields.String()
    document_number = fields.String(allow_none=True)
    flight = fields.String(allow_none=True)
    crossing_point = fields.String(allow_none=True)
    candidates = fields.List(fields.Nested(ScreeningHitView))


class ManifestResultView(Schema):
    class Meta:
        ordered = True

    travellers = fields.List(fields.Nested(ManifestTravellerResultView))
    screened = fields.Integer()
    with_candidates = fields.Integer()


# ---- listing ------------------------------------------------------------------------------------------------------


class ReturneeQuery(PagingQuery):
    status = fields.String(
        validate=_one_of((*m.STATUSES, *policy.COARSE_STATUS)),
        metadata={"description": "A status in the caller's terms: the border's are expected, arrived and other."},
    )
    risk_level = fields.String(validate=_one_of(m.RISK_LEVELS))
    citizenship = fields.String(validate=COUNTRY)
    register_number = fields.String(validate=validate.Length(min=1, max=32))
    updated_since = fields.AwareDateTime()


class HotlineContactQuery(PagingQuery):
    returnee_id = fields.UUID()
    channel = fields.String(validate=_one_of(m.CONTACT_CHANNELS))


class BorderInstructionQuery(PagingQuery):
    returnee_id = fields.UUID()
    instruction = fields.String(validate=_one_of(m.INSTRUCTIONS))
    active_at = fields.AwareDateTime()


class BorderCrossingQuery(PagingQuery):
    returnee_id = fields.UUID()
    crossing_point = fields.String(validate=validate.Length(min=1, max=100))
    direction = fields.String(validate=_one_of(m.DIRECTIONS))
    unmatched = fields.Boolean()
    flagged_for_interior = fields.Boolean()
    occurred_from = fields.AwareDateTime()
    occurred_to = fields.AwareDateTime()


class VettingAssessmentQuery(PagingQuery):
    returnee_id = fields.UUID()
    risk_level = fields.String(validate=_one_of(m.RISK_LEVELS))


class ProsecutorialDecisionQuery(PagingQuery):
    returnee_id = fields.UUID()
    decision = fields.String(validate=_one_of(m.DECISIONS))
    case_number = fields.String(validate=validate.Length(min=1, max=64))


_PAGES: dict[str, type[Schema]] = {}


def page_of(item: type[Schema]) -> type[Schema]:
    """`{"items": [...], "page", "page_size", "total"}` for an item schema (one class per item, for OpenAPI)."""
    name = item.__name__.removesuffix("View") + "Page"
    if name not in _PAGES:
        _PAGES[name] = Schema.from_dict(
            {
                "items": fields.List(fields.Nested(item)),
                "page": fields.Integer(),
                "page_size": fields.Integer(),
                "total": fields.Integer(),
            },
            name=name,
        )
    return _PAGES[name]
