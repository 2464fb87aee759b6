"""Marshmallow schemas: what callers send (strict: unknown fields are refused) and what each agency sees.

Need to know lives here as much as in `policy.py`: every agency has its own view schema of a returnee, and a field an
agency may not see is simply not in its schema, so it is absent from the response and from the OpenAPI document.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, post_dump, validate, validates_schema

from exchange.db import utcnow
from exchange.register import models as m
from exchange.register.transliteration import parse_partial_date
from exchange.web.schemas import PagingQuery, Strict

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


class ReturneeUpdateSchema(Strict):
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

    require_changes = True  # an update must change something; the create schema below turns this off

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data and self.require_changes:
            raise ValidationError("Send at least one field to change.", field_name="_schema")


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


class HotlineContactUpdateSchema(Strict):
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


class BorderInstructionUpdateSchema(Strict):
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


class BorderCrossingUpdateSchema(Strict):
    returnee_id = fields.UUID(metadata={"description": "Links an unmatched crossing to its returnee (interior)."})
    outcome = fields.String(validate=_one_of(m.OUTCOMES))
    officer = fields.String(allow_none=True, validate=OFFICER)
    emergency_document_number = fields.String(allow_none=True, validate=validate.Length(min=1, max=40))


class VettingAssessmentUpdateSchema(Strict):
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
    returnee_id = fields.UUID(required=True)
    interviewed_at = fields.AwareDateTime(required=True)
    genuine_repentance = fields.String(required=True, validate=_one_of(m.REPENTANCE))
    risk_level = fields.String(required=True, validate=_one_of(m.RISK_LEVELS))
    findings = fields.String(required=True, validate=LONG)
    source_reliability = fields.String(required=True, validate=_one_of(m.SOURCE_RELIABILITY))
    information_accuracy = fields.String(required=True, validate=_one_of(m.INFORMATION_ACCURACY))


class ProsecutorialDecisionUpdateSchema(Strict):
    """The decision itself cannot change: a new decision is recorded instead."""

    statute = fields.String(allow_none=True, validate=SHORT)
    case_number = fields.String(validate=validate.Length(min=1, max=64))
    prosecutor = fields.String(allow_none=True, validate=OFFICER)
    notes = fields.String(allow_none=True, validate=LONG)


class ProsecutorialDecisionCreateSchema(ProsecutorialDecisionUpdateSchema):
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


class HotlineContactView(ChildView):
    received_at = fields.AwareDateTime()
    channel = fields.String()
    caller_relation = fields.String(allow_none=True)
    location_country = fields.String(allow_none=True)
    intent_to_return = fields.Boolean()
    summary = fields.String()
    officer = fields.String(allow_none=True)


class BorderInstructionView(ChildView):
    instruction = fields.String()
    valid_from = fields.AwareDateTime()
    valid_until = fields.AwareDateTime(allow_none=True)
    reason = fields.String()
    issued_by = fields.String(allow_none=True)


class BorderInstructionBorderView(Schema):
    """What a border post sees of an instruction: what to do and until when; never why."""

    class Meta:
        ordered = True

    instruction = fields.String()
    valid_until = fields.AwareDateTime(allow_none=True)


class BorderInstructionBorderRecordView(ChildView, BorderInstructionBorderView):
    """The border's view of an instruction when it lists instructions."""

    class Meta:
        ordered = True


class BorderCrossingView(RecordView):
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


class VettingAssessmentView(ChildView):
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


class VettingAssessmentProsecutorView(VettingAssessmentView):
    """H1: not for judicial proceedings without the owner's consent, so `findings` is absent while the code is H1."""

    findings_withheld = fields.Method("_withheld", metadata={"description": "True when findings are withheld (H1)."})

    def _withheld(self, obj: m.VettingAssessment) -> bool:
        return obj.handling_code == "H1"

    @post_dump(pass_original=True)
    def _withhold_findings(self, data: dict[str, Any], original: m.VettingAssessment, **_: Any) -> dict[str, Any]:
        if original.handling_code == "H1":
            data.pop("findings", None)
        return data


class ProsecutorialDecisionView(ChildView):
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


class ReturneeBaseView(RecordView):
    """The fields every reading agency sees."""

    register_number = fields.String()
    person_name = fields.Nested(PersonNameSchema)
    name_variants = fields.List(fields.Nested(NameVariantSchema))
    birth_date = fields.String(allow_none=True)
    sex = fields.String()
    citizenship = fields.String()
    identifications = fields.List(fields.Nested(IdentificationSchema))
    handling_code = fields.String()
    handling_restriction = fields.String(allow_none=True, metadata={"description": "H3 restriction text."})


class InteriorReturneeView(ReturneeBaseView):
    status = fields.String()
    birth_place = fields.String(allow_none=True)
    conflict_history = fields.List(fields.Nested(ConflictEpisodeSchema))
    accompanying_persons = fields.List(fields.Nested(AccompanyingPersonSchema))
    risk_level = fields.String()
    active_border_instruction = _ActiveInstruction(BorderInstructionView)
    hotline_contacts = fields.List(fields.Nested(HotlineContactView))
    vetting_assessments = fields.List(fields.Nested(VettingAssessmentView))
    border_crossings = fields.List(fields.Nested(BorderCrossingView))
    prosecutorial_decisions = fields.List(fields.Nested(ProsecutorialDecisionView))


class ProsecutorReturneeView(InteriorReturneeView):
    vetting_assessments = fields.List(fields.Nested(VettingAssessmentProsecutorView))


class BorderReturneeView(ReturneeBaseView):
    status = fields.Method(
        "_coarse_status",
        metadata={"description": "expected, arrived or other", "enum": ["expected", "arrived", "other"]},
    )
    active_border_instruction = _ActiveInstruction(BorderInstructionBorderView)
    border_crossings = fields.List(fields.Nested(BorderCrossingView))

    def _coarse_status(self, obj: m.Returnee) -> str:
        return obj.status if obj.status in ("expected", "arrived") else "other"


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


# ---- listing ------------------------------------------------------------------------------------------------------


class ReturneeQuery(PagingQuery):
    status = fields.String(validate=_one_of(m.STATUSES))
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
