"""A realistic demo register, loaded through the service layer exactly as the agencies would write it.

The people are fictional. Each returnee is walked to a different point of the lifecycle by the agency that owns each
step (interior, border, prosecutor), so the demo exercises the same rules as the API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from exchange.db import utcnow
from exchange.identity import Caller
from exchange.register.models import Returnee
from exchange.register.services import RegisterService

INTERIOR = Caller(agency="interior", client_id="demo-interior", officer="TJ-MVD-04411")
BORDER = Caller(agency="border", client_id="demo-border", officer="TJ-PS-DUSHANBE-017")
PROSECUTOR = Caller(agency="prosecutor", client_id="demo-prosecutor", officer="TJ-GP-00213")

# The stages, in lifecycle order; each person is walked up to (and including) their stage.
STAGES = ("reported", "expected", "arrived", "under_vetting", "vetted", "under_review", "decided", "reintegrating")


@dataclass(frozen=True, kw_only=True)
class DemoPerson:
    given: str
    surname: str
    patronymic: str | None
    latin: str
    birth_date: str
    sex: str
    birth_place: str
    passport: str | None
    stage: str
    risk: str = "unknown"
    conflict: dict[str, Any] = field(default_factory=dict)
    companions: tuple[dict[str, Any], ...] = ()
    decision: str | None = None
    detain: bool = False


PEOPLE = (
    DemoPerson(given="Фирдавс", surname="Раҳимов", patronymic="Алиевич", latin="Firdavs Rakhimov",
               birth_date="1994-02-11", sex="male", birth_place="Kulob", passport=None, stage="reported",
               conflict={"country": "SY", "from": "2015-06", "affiliation": "armed group", "role": "fighter"}),
    DemoPerson(given="Ҷӯрабек", surname="Назаров", patronymic=None, latin="Jurabek Nazarov",
               birth_date="1991-07", sex="male", birth_place="Vahdat", passport="401234567", stage="expected",
               conflict={"country": "IQ", "from": "2014-11", "to": "2016-03", "affiliation": "armed group",
                         "role": "driver"}),
    DemoPerson(given="Мадина", surname="Қодирова", patronymic=None, latin="Madina Kodirova",
               birth_date="1996-09-30", sex="female", birth_place="Dushanbe", passport=None, stage="expected",
               companions=({"relation": "son", "full_name": "Умар Қодиров", "birth_date": "2016", "is_minor": True},
                           {"relation": "daughter", "full_name": "Оиша Қодирова", "birth_date": "2018",
                            "is_minor": True})),
    DemoPerson(given="Сорбон", surname="Каримов", patronymic="Тоҳирович", latin="Sorbon Karimov",
               birth_date="1989-12-02", sex="male", birth_place="Khujand", passport="400765432", stage="arrived",
               conflict={"country": "SY", "from": "2015-01", "to": "2015-09", "role": "cook"}),
    DemoPerson(given="Шаҳром", surname="Исмоилов", patronymic=None, latin="Shahrom Ismoilov",
               birth_date="1993-05-17", sex="male", birth_place="Qurghonteppa", passport="400111222",
               stage="under_vetting", risk="medium"),
    DemoPerson(given="Далер", surname="Саидов", patronymic="Ҳамидович", latin="Daler Saidov",
               birth_date="1987-03-08", sex="male", birth_place="Rasht", passport="400333444", stage="under_review",
               risk="low"),
    DemoPerson(given="Умед", surname="Мирзоев", patronymic=None, latin="Umed Mirzoev", birth_date="1990-10-21",
               sex="male", birth_place="Istaravshan", passport="400555666", stage="reintegrating", risk="low",
               decision="amnesty_granted"),
    DemoPerson(given="Баҳодур", surname="Шарипов", patronymic=None, latin="Bahodur Sharipov",
               birth_date="1985-01-14", sex="male", birth_place="Panjakent", passport="400777888", stage="decided",
               risk="high", decision="charges_filed",
               conflict={"country": "SY", "from": "2014-02", "affiliation": "armed group", "role": "commander"}),
    DemoPerson(given="Ориф", surname="Давлатов", patronymic=None, latin="Orif Davlatov", birth_date="1982",
               sex="male", birth_place="Dushanbe", passport="400999000", stage="reported", risk="high", detain=True,
               conflict={"country": "SY", "from": "2015-04", "affiliation": "armed group", "role": "recruiter"}),
)


def _at(stage: str, person: DemoPerson) -> bool:
    return STAGES.index(person.stage) >= STAGES.index(stage)


Step = Callable[[str, str], None]


def _walk(service: RegisterService, person: DemoPerson, days_ago: int, step: Step) -> Returnee:
    now = utcnow()
    start = now - timedelta(days=days_ago)
    identifications = (
        [{"category": "passport", "id": person.passport, "issuer_country": "TJ", "expires": None, "status": "valid"}]
        if person.passport else []
    )
    contact = service.record_hotline_contact(INTERIOR, {
        "new_returnee": {
            "person_name": {"given": person.given, "surname": person.surname, "patronymic": person.patronymic},
            "name_variants": [{"value": person.latin, "script": "latn", "kind": "transliteration"}],
            "birth_date": person.birth_date, "birth_place": person.birth_place, "sex": person.sex,
            "citizenship": "TJ", "identifications": identifications,
            "conflict_history": [person.conflict] if person.conflict else [],
            "accompanying_persons": list(person.companions), "risk_level": person.risk,
        },
        "received_at": start, "channel": "relative", "caller_relation": "mother", "location_country": "TR",
        "intent_to_return": not person.detain,
        "summary": "Relative reports he regrets joining and wants to come home." if not person.detain else
        "Informant reports he intends to return to recruit.",
        "officer": INTERIOR.officer,
    })
    returnee = contact.returnee
    number = returnee.register_number
    step("interior", f"hotline: a relative calls about {person.latin}; registered {number} (reported)")
    if person.detain:
        service.issue_border_instruction(INTERIOR, {
            "returnee_id": returnee.id, "instruction": "DETAIN", "valid_from": start,
            "valid_until": now + timedelta(days=365), "reason": "Warrant 17/2015: recruitment for an armed group.",
        })
        step("interior", f"{number}: DETAIN instruction to every border post (the reason is kept from border)")
        return returnee
    if not _at("expected", person):
        return returnee
    service.issue_border_instruction(INTERIOR, {
        "returnee_id": returnee.id, "instruction": "ASSIST_RETURN", "valid_from": start + timedelta(days=2),
        "valid_until": now + timedelta(days=90), "reason": "Genuine wish to return; help with documents.",
    })
    step("interior", f"{returnee.register_number}: ASSIST_RETURN issued -> expected")
    if not _at("arrived", person):
        return returnee
    service.record_crossing(BORDER, {
        "returnee_id": returnee.id, "crossing_point": "Dushanbe International Airport", "direction": "entry",
        "occurred_at": start + timedelta(days=10), "documents_presented": [],
        "emergency_document_number": f"ETD-{returnee.register_number[-6:]}", "outcome": "handed_over",
    })
    step("border", f"{number}: entry at Dushanbe airport, emergency travel document issued -> arrived")
    if not _at("under_vetting", person):
        return returnee
    service.transition(INTERIOR, returnee.id, to="under_vetting", if_match=None)
    service.record_vetting(INTERIOR, {
        "returnee_id": returnee.id, "interviewed_at": start + timedelta(days=12), "genuine_repentance": "yes",
        "risk_level": person.risk if person.risk != "unknown" else "medium",
        "findings": "Consistent account of travel and return; no sign of continued contact with the group.",
        "reintegration_plan": "Vocational training; monthly check-in with the district officer.",
        "source_reliability": "B", "information_accuracy": "2",
        "handling_code": "H1" if person.decision == "charges_filed" else "H0",
    })
    step("interior", f"{returnee.register_number}: under vetting, interview recorded (Europol B2)")
    if not _at("vetted", person):
        return returnee
    service.transition(INTERIOR, returnee.id, to="vetted", if_match=None)
    service.transition(INTERIOR, returnee.id, to="under_review", if_match=None)
    step("interior", f"{returnee.register_number}: vetted, sent to the prosecutor -> under_review")
    if not _at("decided", person) or person.decision is None:
        return returnee
    service.record_decision(PROSECUTOR, {
        "returnee_id": returnee.id, "decision": person.decision,
        "statute": "Criminal Code art. 401-1", "case_number": f"GP-{returnee.register_number[-6:]}",
        "decided_at": start + timedelta(days=30),
        "notes": "Voluntary return and cooperation under the amnesty note to art. 401-1."
        if person.decision == "amnesty_granted" else "Evidence of command role.",
    })
    step("prosecutor", f"{returnee.register_number}: decision {person.decision} -> {returnee.status}")
    if _at("reintegrating", person):
        service.transition(INTERIOR, returnee.id, to="reintegrating", if_match=None)
        step("interior", f"{returnee.register_number}: reintegration plan started -> reintegrating")
    return returnee


def _quiet(_agency: str, _text: str) -> None:
    pass


def load_demo_data(
    session: Session, *, append: bool = False, step: Step = _quiet
) -> list[tuple[str, str, str, str, str]] | None:
    """Load the demo people (flushing, not committing). None when the register is not empty and not `append`.

    `step(agency, text)` is told of each act as it happens, so the CLI can narrate the agencies at work.
    """
    if not append and session.scalar(select(func.count()).select_from(Returnee)):
        return None
    service = RegisterService(session=session)
    rows = []
    for days_ago, person in enumerate(PEOPLE, start=40):
        returnee = _walk(service, person, days_ago, step)
        instruction = returnee.active_border_instruction(utcnow())
        rows.append((returnee.register_number, returnee.full_name, returnee.status, returnee.risk_level,
                     instruction.instruction if instruction else "-"))
    # An entry at a border post that matched nobody: kept, and flagged for interior.
    service.record_crossing(BORDER, {
        "crossing_point": "Panji Poyon", "direction": "entry", "occurred_at": utcnow() - timedelta(hours=5),
        "documents_presented": [{"category": "passport", "id": "400246810", "issuer_country": "TJ"}],
        "outcome": "handed_over", "traveller_name": "Rustam Nazarov", "traveller_birth_date": "1992",
    })
    step("border", "Panji Poyon: entry by a traveller on nobody's file; recorded unmatched and flagged for interior")
    for hit in service.screen_by_name(BORDER, name="Orif Davlatov", birth_date="1982", limit=1, min_score=70):
        instruction = hit.returnee.active_border_instruction(utcnow())
        step("border", f"screening 'Orif Davlatov' b. 1982 (Latin) finds {hit.returnee.register_number} "
                       f"'{hit.matched_value}' score {hit.score}: {instruction.instruction if instruction else '-'}")
    return rows
