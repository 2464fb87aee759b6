"""Border screening over HTTP: by document number, and by name + birth date across scripts, in the border view."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from exchange import migrate
from exchange.identity import Caller
from exchange.register import name_index, services
from exchange.register.models import ReturneeNameBlock, ReturneeNameChange
from exchange.register.name_index import NameIndex
from exchange.register.services import NameQuery, RegisterService
from tests.conftest import AgencyClient, returnee_body
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


# ---- retrieval by the name index (issue 14 §3) -----------------------------------------------------------------


def test_a_write_is_visible_to_the_next_screening_from_another_app(
    make_returnee: MakeReturnee, interior: AgencyClient, border: AgencyClient, make_app: Callable[..., Any]
) -> None:
    # The index lives in the database: a second app (another worker, its own engine) screens what the first wrote.
    created = make_returnee(person_name={"given": "Шодмон", "surname": "Қурбонов"}, name_variants=[],
                            birth_date="1990-08-30", identifications=[])
    border_elsewhere = AgencyClient(make_app().test_client(), border.caller)
    assert [c["returnee"]["id"] for c in screen(border_elsewhere, name="Shodmon Kurbonov")] == [created["id"]]
    response = interior.patch(f"/v1/returnees/{created['id']}", json={"person_name": {
        "given": "Фаррух", "surname": "Азимов"}, "birth_date": "1971-02-03"}, headers={"If-Match": created["_etag"]})
    assert response.status_code == 200, response.get_json()
    assert screen(border_elsewhere, name="Shodmon Kurbonov") == []
    assert screen(border_elsewhere, name="Shodmon Kurbonov", birth_date="1990-08-30") == []
    [hit] = screen(border_elsewhere, name="Farrukh Azimov", birth_date="1971-02-03")
    assert hit["returnee"]["id"] == created["id"] and hit["score"] == 100.0


BORDER = Caller(agency="border", client_id="t", purpose="border-screening")
INTERIOR = Caller(agency="interior", client_id="t", purpose="register-maintenance")


def add_returnees(app: Flask, people: list[tuple[str, str, str | None]]) -> list[str]:
    """(given, surname, birth date) each, registered through the service, committed; their ids."""
    with Session(app.extensions["exchange.db"]) as session:
        service = RegisterService(session=session)
        ids = [str(service.create_returnee(INTERIOR, {**returnee_body(
            person_name={"given": given, "surname": surname}, name_variants=[], identifications=[]),
            "birth_date": birth}).id) for given, surname, birth in people]
        session.commit()
    return ids


def screen_service(app: Flask, *queries: NameQuery, min_score: float = 70.0) -> list[list[tuple[str, float]]]:
    with Session(app.extensions["exchange.db"]) as session:
        found = RegisterService(session=session).screen_many(BORDER, queries, limit=10, min_score=min_score)
    return [[(str(hit.returnee.id), hit.score) for hit in hits] for hits in found]


def test_screen_many_answers_each_traveller_as_screen_by_name_does(app: Flask) -> None:
    add_returnees(app, [("Гулмурод", "Халимов", "1975-05-14"), ("Фирдавс", "Раҳимзода", "1988-06-02"),
                        ("Комрон", "Саидов", None), ("Зарина", "Каримова", "1990"), ("Ҷамшед", "Назаров", "1985")])
    travellers = [NameQuery(name="Gulmurod Khalimov", birth_date="1975-05-14"),
                  NameQuery(name="Firdavs Rakhimov", birth_date="1988"), NameQuery(name="Kamran Saidov"),
                  NameQuery(name="Nobody Atall", birth_date="1960-01-01"), NameQuery(name="Zarina Karimova")]
    batch = screen_service(app, *travellers)
    assert [len(hits) > 0 for hits in batch] == [True, True, True, False, True]
    with Session(app.extensions["exchange.db"]) as session:
        service = RegisterService(session=session)
        one_by_one = [[(str(h.returnee.id), h.score) for h in service.screen_by_name(
            BORDER, name=t.name, birth_date=t.birth_date, limit=10, min_score=70.0)] for t in travellers]
    assert batch == one_by_one
    assert screen_service(app) == []


def test_birth_years_that_cannot_reach_the_threshold_are_not_retrieved_but_unknown_and_near_ones_are(
    app: Flask,
) -> None:
    exact, off_by_one, digit, unknown, far = add_returnees(app, [
        ("Гулмурод", "Халимов", "1975-05-14"), ("Гулмурод", "Халимов", "1976-05-14"),
        ("Гулмурод", "Халимов", "1985-05-14"), ("Гулмурод", "Халимов", None), ("Гулмурод", "Халимов", "1960")])
    [hits] = screen_service(app, NameQuery(name="Gulmurod Halimov", birth_date="1975-05-14"))
    assert [rid for rid, _ in hits] == [exact, unknown, off_by_one, digit]
    [everyone] = screen_service(app, NameQuery(name="Gulmurod Halimov", birth_date="1975-05-14"), min_score=0)
    assert {rid for rid, _ in everyone} == {exact, off_by_one, digit, unknown, far}


def test_the_candidates_sharing_most_query_words_are_scored_first(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoys = add_returnees(app, [(given, "Халимов", "1975-05-14") for given in ("Фарҳод", "Ҷамшед", "Умед", "Алишер")])
    [target] = add_returnees(app, [("Гулмурод", "Халимов", "1975-05-14")])
    monkeypatch.setattr(services, "SCREENING_CANDIDATES", 1)
    [hits] = screen_service(app, NameQuery(name="Gulmurod Khalimov", birth_date="1975-05-14"), min_score=0)
    assert [rid for rid, _ in hits] == [target]
    monkeypatch.setattr(services, "SCREENING_CANDIDATES", 300)
    [hits] = screen_service(app, NameQuery(name="Gulmurod Khalimov", birth_date="1975-05-14"), min_score=0)
    assert hits[0][0] == target and {rid for rid, _ in hits[1:]} == set(decoys)


def test_rare_shared_words_outweigh_more_common_ones(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoy shares the query's common given name (more retrieval keys), the target only its rare surname: the
    keys are weighed by rarity, so the target is the candidate kept."""
    add_returnees(app, [("Гулмурод", surname, "1975-05-14") for surname in ("Каримов", "Саидов", "Назаров", "Шарипов")])
    [target] = add_returnees(app, [("Фарҳод", "Халимов", "1975-05-14")])
    monkeypatch.setattr(services, "SCREENING_CANDIDATES", 1)
    [hits] = screen_service(app, NameQuery(name="Gulmurod Khalimov", birth_date="1975-05-14"), min_score=0)
    assert [rid for rid, _ in hits] == [target]


def test_the_migration_indexes_the_names_already_registered(app: Flask, database_url: str) -> None:
    add_returnees(app, [("Гулмурод", "Халимов", "1975-05-14"), ("Фирдавс", "Раҳимзода", None)])
    engine = app.extensions["exchange.db"]

    def blocks() -> list[tuple[str, str, int | None]]:
        with engine.connect() as connection:
            return sorted((str(r), b, y) for r, b, y in connection.execute(select(
                ReturneeNameBlock.returnee_id, ReturneeNameBlock.block, ReturneeNameBlock.birth_year)))

    written = blocks()
    assert written and {year for _, _, year in written} == {1975, None}
    config = migrate.alembic_config(engine)
    before = ScriptDirectory.from_config(config).get_revision("0009_screening_index").down_revision
    command.downgrade(config, str(before))
    command.upgrade(config, "heads")
    assert blocks() == written
    assert screen_service(app, NameQuery(name="Firdavs Rakhimov"))[0]


def test_a_manifest_answers_each_traveller_as_document_and_name_screening_one_by_one(
    app: Flask, border: AgencyClient
) -> None:
    """The manifest screens every name in one batch (`screen_many`): each traveller's answer is still what screening
    them alone by document and by name gives, each returnee once at its best score."""
    first, _, _ = add_returnees(app, [
        ("Гулмурод", "Халимов", "1975-05-14"), ("Фирдавс", "Раҳимзода", "1988-06-02"), ("Комрон", "Саидов", None)])
    with Session(app.extensions["exchange.db"]) as session:  # a namesake whose passport the first traveller shows
        namesake = str(RegisterService(session=session).create_returnee(INTERIOR, {**returnee_body(
            person_name={"given": "Гулмурод", "surname": "Халимов"}, name_variants=[],
            identifications=[{"category": "passport", "id": "400123456", "issuer_country": "TJ"}]),
            "birth_date": "1975"}).id)
        session.commit()
    travellers = [
        {"name": "Gulmurod Khalimov", "birth_date": "1975-05-14", "document_number": "400 123 456"},
        {"name": "Firdavs Rakhimov", "birth_date": "1988"}, {"name": "Kamran Saidov", "document_number": "none"},
        {"name": "Nobody Atall", "birth_date": "1960-01-01"}, {"name": "Gulmurod Halimov", "birth_date": "1975"},
    ]
    for limit in (10, 1):
        response = border.post("/v1/screening/manifests", json={
            "travellers": [{**t, "flight": "FZ 341"} for t in travellers], "limit": limit})
        assert response.status_code == 200, response.get_json()
        manifest = [[(c["returnee"]["id"], c["score"], c["matched_on"]) for c in t["candidates"]]
                    for t in response.get_json()["travellers"]]
        one_by_one = []
        with Session(app.extensions["exchange.db"]) as session:
            service = RegisterService(session=session)
            for t in travellers:
                found = service.screen_by_document(BORDER, t["document_number"]) if "document_number" in t else []
                found += service.screen_by_name(BORDER, name=t["name"], birth_date=t.get("birth_date"), limit=limit,
                                                min_score=70.0)
                best: dict[str, tuple[str, float, str]] = {}
                for hit in found:
                    rid = str(hit.returnee.id)
                    if rid not in best or hit.score > best[rid][1]:
                        best[rid] = (rid, hit.score, hit.matched_on)
                one_by_one.append(sorted(best.values(), key=lambda h: -h[1])[:limit])
        assert manifest == one_by_one
        assert manifest[0][0] == (namesake, 100.0, "document") and manifest[3] == []
        if limit == 10:
            assert (first, 100.0, "name") in manifest[0]


# ---- the worker's in-memory name index -------------------------------------------------------------------------


def screen_with(app: Flask, index: NameIndex, name: str) -> list[str]:
    with Session(app.extensions["exchange.db"]) as session:
        hits = RegisterService(session=session, name_index=index).screen_by_name(
            BORDER, name=name, birth_date=None, limit=10, min_score=70.0)
    return [str(hit.returnee.id) for hit in hits]


def rename(app: Flask, returnee_id: str, given: str, surname: str) -> None:
    with Session(app.extensions["exchange.db"]) as session:
        RegisterService(session=session).update_returnee(INTERIOR, uuid.UUID(returnee_id), if_match=None, changes={
            "person_name": {"given": given, "surname": surname}})
        session.commit()


def newest_change(app: Flask) -> int:
    with app.extensions["exchange.db"].connect() as connection:
        return int(connection.scalar(select(func.max(ReturneeNameChange.seq))) or 0)


def test_a_change_committed_after_a_newer_one_still_reaches_a_loaded_index(app: Flask) -> None:
    """Change numbers are taken at write time, so on PostgreSQL a lower one can become visible after a higher one:
    the index asks again for the numbers it skipped."""
    shodmon, other = add_returnees(app, [("Шодмон", "Қурбонов", None), ("Фирдавс", "Раҳимзода", None)])
    index = NameIndex(app.extensions["exchange.db"])
    assert screen_with(app, index, "Shodmon Kurbonov") == [shodmon]
    rename(app, shodmon, "Фаррух", "Азимов")
    skipped = newest_change(app)
    with app.extensions["exchange.db"].begin() as connection:  # as if its change row were not committed yet, and a
        connection.execute(delete(ReturneeNameChange).where(ReturneeNameChange.seq == skipped))  # later writer's was
        connection.execute(insert(ReturneeNameChange), [{"seq": skipped + 1, "returnee_id": uuid.UUID(other)}])
    assert screen_with(app, index, "Firdavs Rahimzoda") == [other]  # the index has seen skipped + 1, not skipped
    with app.extensions["exchange.db"].begin() as connection:  # ... and now the rename's commits
        connection.execute(insert(ReturneeNameChange), [{"seq": skipped, "returnee_id": uuid.UUID(shodmon)}])
    assert screen_with(app, index, "Shodmon Kurbonov") == []
    assert screen_with(app, index, "Farrukh Azimov") == [shodmon]


def test_a_skipped_change_number_is_given_up_after_gap_seconds(app: Flask) -> None:
    [first] = add_returnees(app, [("Шодмон", "Қурбонов", None)])
    now = [0.0]
    index = NameIndex(app.extensions["exchange.db"], monotonic=lambda: now[0])
    index.refresh()
    skipped = newest_change(app) + 1
    with app.extensions["exchange.db"].begin() as connection:  # skipped: a write rolled back for good
        connection.execute(insert(ReturneeNameChange), [{"seq": skipped + 1, "returnee_id": uuid.UUID(first)}])
    index.refresh()
    assert skipped in index._gaps
    now[0] = name_index.GAP_SECONDS - 1
    index.refresh()
    assert skipped in index._gaps
    now[0] = name_index.GAP_SECONDS
    index.refresh()
    assert index._gaps == {}


def test_a_write_rolled_back_never_reaches_the_index(app: Flask) -> None:
    """The index reads through a connection of its own: the caller's uncommitted writes are not in it, and a later
    refresh does not keep what a rollback undid."""
    index = NameIndex(app.extensions["exchange.db"])
    index.refresh()
    with Session(app.extensions["exchange.db"]) as session:
        service = RegisterService(session=session, name_index=index)
        service.create_returnee(INTERIOR, {**returnee_body(person_name={"given": "Шодмон", "surname": "Қурбонов"},
                                                           name_variants=[], identifications=[]), "birth_date": None})
        session.flush()
        assert service.screen_by_name(BORDER, name="Shodmon Kurbonov", birth_date=None, limit=10,
                                      min_score=70.0) == []
        session.rollback()
    [kept] = add_returnees(app, [("Шодмон", "Қурбонов", None)])
    assert screen_with(app, index, "Shodmon Kurbonov") == [kept]


def test_a_candidate_sharing_keys_with_more_query_words_is_kept_before_one_sharing_many_keys_of_one_word(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each query word counts its heaviest shared key once: a decoy sharing the given name exactly (its skeleton and
    every one-letter deletion of it) does not outweigh a target with a typo in both words, one shared key each."""
    [decoy] = add_returnees(app, [("Гулмурод", "Саидов", "1975-05-14")])
    [target] = add_returnees(app, [("Гулмурат", "Халилов", "1975-05-14")])
    monkeypatch.setattr(services, "SCREENING_CANDIDATES", 1)
    [hits] = screen_service(app, NameQuery(name="Gulmurod Halimov", birth_date="1975-05-14"), min_score=0)
    assert [rid for rid, _ in hits] == [target]
    monkeypatch.setattr(services, "SCREENING_CANDIDATES", 2)
    [hits] = screen_service(app, NameQuery(name="Gulmurod Halimov", birth_date="1975-05-14"), min_score=0)
    assert {rid for rid, _ in hits} == {target, decoy}


def test_a_served_worker_loads_its_name_index_ahead_of_the_first_screening(
    app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    [shodmon] = add_returnees(app, [("Шодмон", "Қурбонов", None)])
    engine = app.extensions["exchange.db"]
    loaded: list[NameIndex] = []
    original = NameIndex._load

    def counting_load(self: NameIndex, connection: Any) -> None:
        loaded.append(self)
        original(self, connection)

    monkeypatch.setattr(NameIndex, "_load", counting_load)
    name_index.warm_up(engine).join(timeout=30)
    index = name_index.name_index_for(engine)
    assert loaded == [index]  # loaded by the warm-up thread ...
    assert screen_with(app, index, "Shodmon Kurbonov") == [shodmon]
    assert loaded == [index]  # ... and the first screening only caught up

    class Unreachable:
        def connect(self) -> Any:
            raise ConnectionRefusedError("database down")

    with caplog.at_level("WARNING", logger="exchange.screening"):
        name_index.warm_up(Unreachable()).join(timeout=30)  # type: ignore[arg-type]
    assert "name index not loaded ahead" in caplog.text  # logged, not raised: the first screening loads instead


def test_among_more_namesakes_than_the_cap_those_whose_birth_date_agrees_best_are_kept(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Namesakes share the same retrieval keys (equal weights): beyond `SCREENING_CANDIDATES` the ones kept are those
    the scorer will rank highest by birth date (exact date, then the year, unknown, a year off, one digit off), not
    the first ones by id; a query without a date keeps the first by id, as before."""
    far = add_returnees(app, [("Гулмурод", "Халимов", "1960-01-01") for _ in range(4)])
    digit, exact, off_by_one, unknown, year = add_returnees(app, [
        ("Гулмурод", "Халимов", "1985-05-14"), ("Гулмурод", "Халимов", "1975-05-14"),
        ("Гулмурод", "Халимов", "1976-05-14"), ("Гулмурод", "Халимов", None), ("Гулмурод", "Халимов", "1975")])
    query = NameQuery(name="Gulmurod Khalimov", birth_date="1975-05-14")
    kept = []
    for cap in range(1, 6):
        monkeypatch.setattr(services, "SCREENING_CANDIDATES", cap)
        [hits] = screen_service(app, query, min_score=0)
        kept.append({rid for rid, _ in hits})
    assert kept == [{exact}, {exact, year}, {exact, year, unknown}, {exact, year, unknown, off_by_one},
                    {exact, year, unknown, off_by_one, digit}]
    monkeypatch.setattr(services, "SCREENING_CANDIDATES", 3)
    [undated] = screen_service(app, NameQuery(name="Gulmurod Khalimov"), min_score=0)
    everyone = [*far, digit, exact, off_by_one, unknown, year]
    assert {rid for rid, _ in undated} == set(sorted(everyone, key=lambda rid: uuid.UUID(rid).hex)[:3])


def test_a_french_off_ending_retrieves_the_russian_ov_surname(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """Moussoeff shares no key with Мусоев as written (msf / msv): the query also reads -off/-eff as -ov/-ev, so the
    target outweighs a namesake of the given name alone, even one born on the query's very date."""
    [target] = add_returnees(app, [("Ҷамшед", "Мусоев", None)])
    add_returnees(app, [("Ҷамшед", "Каримов", "1982-06-02")])
    monkeypatch.setattr(services, "SCREENING_CANDIDATES", 1)
    [hits] = screen_service(app, NameQuery(name="Djamched Moussoeff", birth_date="1982-06-02"), min_score=0)
    assert [rid for rid, _ in hits] == [target]
