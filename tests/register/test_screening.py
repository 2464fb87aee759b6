"""Border screening over HTTP: by document number, and by name + birth date across scripts, in the border view."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import AgencyClient
from tests.test_app import assert_error

MakeReturnee = Callable[..., dict[str, Any]]


@pytest.fixture
def register(make_returnee: MakeReturnee) -> dict[str, dict[str, Any]]:
    """The Tajik-Cyrillic target with no Latin variant on file, plus decoys."""
    return {
        "target": make_returnee(person_name={"given": "Гулмурод", "surname": "Халимов"}, name_variants=[],
                                birth_date="1975-05-14", risk_level="high",
                                identifications=[{"category": "passport", "id": "400123456", "issuer_country": "TJ"}]),
        "same_name_other_birth": make_returnee(person_name={"given": "Гулмурод", "surname": "Халимов"},
                                               name_variants=[], birth_date="1996-01-01", identifications=[]),
        "other_surname": make_returnee(person_name={"given": "Гулмурод", "surname": "Каримов"}, name_variants=[],
                                       birth_date="1975-05-14", identifications=[]),
        "unrelated": make_returnee(person_name={"given": "Фирдавс", "surname": "Раҳимов"}, name_variants=[],
                                   birth_date="1994-02-11", identifications=[]),
    }


def screen(border: AgencyClient, **query: Any) -> list[dict[str, Any]]:
    response = border.post("/v1/screening", json=query)
    assert response.status_code == 200, response.get_json()
    candidates: list[dict[str, Any]] = response.get_json()["candidates"]
    return candidates


def test_latin_spelling_with_birth_date_finds_tajik_cyrillic_record(
    register: dict[str, dict[str, Any]], border: AgencyClient
) -> None:
    candidates = screen(border, name="Gulmurod Halimov", birth_date="1975-05-14")
    assert candidates, "no candidate found"
    top = candidates[0]
    assert top["returnee"]["id"] == register["target"]["id"]
    assert top["matched_on"] == "name" and top["matched_value"] == "Гулмурод Халимов"
    assert top["score"] >= 90
    scores = [c["score"] for c in candidates]
    assert scores == sorted(scores, reverse=True)
    ids = [c["returnee"]["id"] for c in candidates]
    assert register["unrelated"]["id"] not in ids
    for decoy in ("same_name_other_birth", "other_surname"):
        if register[decoy]["id"] in ids:
            assert candidates[ids.index(register[decoy]["id"])]["score"] < top["score"]


@pytest.mark.parametrize(
    "spelling", ["Gulmurod Khalimov", "Гульмурод Халимов", "Gulmurod Xalimov", "HALIMOV GULMUROD", "Gulmurod Halimof"]
)
def test_other_spellings_and_typos_find_the_target_first(
    register: dict[str, dict[str, Any]], border: AgencyClient, spelling: str
) -> None:
    candidates = screen(border, name=spelling, birth_date="1975-05-14")
    assert candidates[0]["returnee"]["id"] == register["target"]["id"]


def test_results_are_in_the_border_view_only(register: dict[str, dict[str, Any]], border: AgencyClient) -> None:
    returnee = screen(border, name="Gulmurod Halimov", birth_date="1975-05-14")[0]["returnee"]
    for hidden in ("risk_level", "birth_place", "conflict_history", "hotline_contacts", "vetting_assessments",
                   "prosecutorial_decisions", "accompanying_persons"):
        assert hidden not in returnee
    assert returnee["status"] == "other"  # reported is shown coarsely


def test_document_number_search_is_exact_after_normalisation(
    register: dict[str, dict[str, Any]], border: AgencyClient
) -> None:
    [hit] = screen(border, document_number="400 123-456")
    assert hit["returnee"]["id"] == register["target"]["id"]
    assert (hit["matched_on"], hit["score"], hit["matched_value"]) == ("document", 100.0, "400123456")
    assert screen(border, document_number="400123457") == []


def test_limit_and_min_score(register: dict[str, dict[str, Any]], border: AgencyClient) -> None:
    assert len(screen(border, name="Gulmurod", limit=1, min_score=0)) == 1
    assert screen(border, name="Zzyzx Qwerty", min_score=50) == []


@pytest.mark.parametrize(
    "query",
    [{}, {"name": "Gulmurod Halimov", "document_number": "1"}, {"name": "G"}, {"name": "Gulmurod", "limit": 0},
     {"name": "Gulmurod", "birth_date": "1975-13"}, {"name": "Gulmurod", "min_score": 101}, {"nom": "x"}],
)
def test_bad_screening_queries_are_422(border: AgencyClient, query: dict[str, Any]) -> None:
    assert_error(border.post("/v1/screening", json=query), 422, "validation_failed")


@pytest.mark.parametrize("agency", ["interior", "prosecutor", "auditor", "security"])
def test_only_the_border_screens(
    register: dict[str, dict[str, Any]], as_agency: Callable[..., AgencyClient], agency: str
) -> None:
    response = as_agency(agency).post("/v1/screening", json={"name": "Gulmurod Halimov"})
    assert_error(response, 403, "insufficient_scope")
    # and need to know holds even if a non-border client were given the screening scope
    mistaken = as_agency(agency, scopes=frozenset({"returnees:screen"}))
    assert_error(mistaken.post("/v1/screening", json={"name": "Gulmurod Halimov"}), 403, "not_permitted")
