"""The returnee read path: one SELECT for the returnee (and how many records each of its collections has), then one
joining the non-empty collections the caller's view shows (or one per collection when joining would multiply rows
beyond JOINED_ROWS_LIMIT), none for the others; view schemas built once. Same JSON as a full load either way."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session

from exchange.identity import Caller
from exchange.register import schemas as s
from exchange.register import services
from exchange.register.models import Returnee, ReturneeSearchKey
from exchange.register.services import RETURNEE_COLLECTIONS, RegisterService
from exchange.register.views import RETURNEE_VIEWS, returnee_collections, view_instance
from tests.conftest import AgencyClient, returnee_body
from tests.register.test_records import created, crossing_body, hotline_body, instruction_body

INTERIOR = Caller(agency="interior", client_id="t", purpose="register-maintenance")
BORDER = Caller(agency="border", client_id="t", purpose="border-screening")


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    seen: list[str] = []
    engine = app.extensions["exchange.db"]

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
def returnee_with_records(make_returnee: Callable[..., dict[str, Any]], interior: AgencyClient,
                          border: AgencyClient) -> str:
    """A returnee with two hotline contacts, an instruction and a crossing (no vetting, no decision)."""
    rid: str = make_returnee()["id"]
    created(interior.post("/v1/hotline-contacts", json=hotline_body(rid)))
    created(interior.post("/v1/hotline-contacts", json=hotline_body(rid, received_at="2015-05-01T09:00:00+00:00")))
    created(interior.post("/v1/border-instructions", json=instruction_body(rid, "ASSIST_RETURN")))
    created(border.post("/v1/border-crossings", json=crossing_body(rid)))
    return rid


def test_each_view_names_the_collections_it_shows() -> None:
    assert returnee_collections(s.InteriorReturneeView) == RETURNEE_COLLECTIONS
    assert returnee_collections(s.ProsecutorReturneeView) == RETURNEE_COLLECTIONS
    assert returnee_collections(s.BorderReturneeView) == ("border_instructions", "border_crossings")
    assert view_instance(s.InteriorReturneeView) is view_instance(s.InteriorReturneeView)


@pytest.mark.parametrize(("joined_rows_limit", "statement_count"), [
    (16, 1 + 1),  # the returnee with its counts; contacts, instructions and crossings joined (2 x 1 x 1 rows)
    (1, 1 + 3),  # beyond the limit: one statement per non-empty collection
])
def test_read_is_two_selects_or_one_per_non_empty_collection(
    app: Flask, returnee_with_records: str, monkeypatch: pytest.MonkeyPatch, joined_rows_limit: int,
    statement_count: int,
) -> None:
    monkeypatch.setattr(services, "JOINED_ROWS_LIMIT", joined_rows_limit)
    with Session(app.extensions["exchange.db"]) as session, statements(app) as seen:
        returnee = RegisterService(session=session).get(INTERIOR, Returnee, uuid.UUID(returnee_with_records))
        received = [c.received_at for c in returnee.hotline_contacts]
        assert len(received) == 2 and received == sorted(received)
        assert len(returnee.border_crossings) == 1 and len(returnee.border_instructions) == 1
        assert returnee.vetting_assessments == [] and returnee.prosecutorial_decisions == []
        assert returnee.hotline_contacts[0].returnee is returnee
    assert len(seen) == statement_count


def test_a_returnee_already_in_the_session_keeps_its_loaded_collections(app: Flask, returnee_with_records: str
                                                                        ) -> None:
    with Session(app.extensions["exchange.db"]) as session:
        loaded = session.get(Returnee, uuid.UUID(returnee_with_records))
        assert loaded is not None and len(loaded.hotline_contacts) == 2
        returnee = RegisterService(session=session).get(INTERIOR, Returnee, uuid.UUID(returnee_with_records))
        assert returnee is loaded and len(returnee.hotline_contacts) == 2 and len(returnee.border_crossings) == 1


def test_collections_a_view_does_not_show_are_not_loaded(app: Flask, returnee_with_records: str) -> None:
    with Session(app.extensions["exchange.db"]) as session, statements(app) as seen:
        returnee = RegisterService(session=session).get(
            BORDER, Returnee, uuid.UUID(returnee_with_records), collections=returnee_collections(s.BorderReturneeView))
        assert len(returnee.border_crossings) == 1 and len(returnee.border_instructions) == 1
        with pytest.raises(InvalidRequestError):
            _ = returnee.hotline_contacts
    assert len(seen) == 2  # the returnee with its counts; instructions and crossings joined


@pytest.mark.parametrize("joined_rows_limit", [16, 1])
def test_api_read_is_the_full_load_dumped(app: Flask, returnee_with_records: str, as_agency: Callable[..., Any],
                                          monkeypatch: pytest.MonkeyPatch, joined_rows_limit: int) -> None:
    monkeypatch.setattr(services, "JOINED_ROWS_LIMIT", joined_rows_limit)
    for agency, view in RETURNEE_VIEWS.items():
        response = as_agency(agency).get(f"/v1/returnees/{returnee_with_records}")
        assert response.status_code == 200, response.get_json()
        with Session(app.extensions["exchange.db"]) as session:
            full = session.get(Returnee, uuid.UUID(returnee_with_records))  # lazy loads: every collection
            expected = view().dump(full)
        assert response.get_json() == {"view": agency, **expected}, agency


def test_unknown_returnee_is_404(interior: AgencyClient) -> None:
    response = interior.get(f"/v1/returnees/{uuid.uuid4()}")
    assert response.status_code == 404 and response.get_json()["code"] == "not_found"


def test_a_new_returnee_is_shown_without_reading_its_empty_collections(app: Flask) -> None:
    with Session(app.extensions["exchange.db"]) as session, statements(app) as seen:
        service = RegisterService(session=session)
        returnee = service.create_returnee(INTERIOR, {**returnee_body(), "person_name": {"given": "A", "surname": "B"}})
        shown = view_instance(s.InteriorReturneeView).dump(returnee)
        returnee_id = returnee.id
        session.commit()
    assert shown["hotline_contacts"] == [] and shown["active_border_instruction"] is None
    children = [statement for statement in seen if any(f"FROM {name}" in statement for name in RETURNEE_COLLECTIONS)]
    assert children == []
    assert not any(statement.startswith("DELETE FROM returnee_search_keys") for statement in seen)
    with Session(app.extensions["exchange.db"]) as session:  # its screening keys are there all the same
        keys = session.scalars(select(ReturneeSearchKey.kind).where(ReturneeSearchKey.returnee_id == returnee_id))
        assert sorted(set(keys)) == ["document", "name"]
