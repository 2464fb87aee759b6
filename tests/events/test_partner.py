"""The partner library's side of events and manifests, against the released app (tokens, DPoP, envelopes):
`events.follow` keeps its cursor in a file and resumes after a restart; `screening.manifest` screens a manifest and
interior is told of a DETAIN hit."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from flask import Flask
from sqlalchemy.orm import Session

from exchange.clients.services import ClientService
from exchange.partner.api import ExchangeClient
from exchange.partner.envelopes import PartnerKeys
from exchange.protocol.policy import AGENCY_SCOPES, PURPOSES
from tests.conftest import returnee_body

ISSUER = "http://localhost"
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def released_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(AUTHENTICATOR=None, ISSUER=ISSUER, UNSAFE_PLAIN_JSON_BODIES=False)


@pytest.fixture
def connect(released_app: Flask) -> Iterator[Callable[..., ExchangeClient]]:
    clients: list[ExchangeClient] = []
    registered: dict[str, PartnerKeys] = {}

    def make(agency: str, *, client_id: str | None = None) -> ExchangeClient:
        client_id = client_id or f"{agency}-{len(clients) + 1}"
        if client_id not in registered:
            registered[client_id] = PartnerKeys.generate()
            with Session(released_app.extensions["exchange.db"]) as session:
                ClientService(session=session).register(
                    {"client_id": client_id, "agency": agency, "name": f"{agency} test",
                     "scopes": sorted(AGENCY_SCOPES[agency]), "keys": registered[client_id].registration()},
                    officer="TJ-SEC-1")
                session.commit()
        client = ExchangeClient(ISSUER, client_id=client_id, agency=agency, keys=registered[client_id],
                                purpose=min(PURPOSES[agency]), transport=httpx.WSGITransport(app=released_app))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def unmatched_entry(border: ExchangeClient, name: str) -> None:
    border.border_crossings.create({"crossing_point": "DYU airport", "direction": "entry",
                                    "occurred_at": NOW.isoformat(), "outcome": "admitted", "traveller_name": name})


def test_following_resumes_from_the_cursor_file_after_a_restart(
    connect: Callable[..., ExchangeClient], tmp_path: Path
) -> None:
    border = connect("border")
    cursor_file = tmp_path / "interior.cursor"
    unmatched_entry(border, "First Traveller")
    unmatched_entry(border, "Second Traveller")

    stop = threading.Event()
    following = connect("interior", client_id="interior-cms").events.follow(cursor_file=cursor_file, wait=0,
                                                                            stop=stop)
    taken = [next(following)["record"]["traveller_name"], next(following)["record"]["traveller_name"]]
    assert taken == ["First Traveller", "Second Traveller"]
    assert not cursor_file.exists()  # the page is not confirmed until the generator is asked for more
    stop.set()
    with pytest.raises(StopIteration):
        next(following)
    assert cursor_file.read_text().startswith("e1.")

    unmatched_entry(border, "Third Traveller")
    restarted = connect("interior", client_id="interior-cms").events.follow(cursor_file=cursor_file, wait=0)
    event = next(restarted)
    assert event["type"] == "crossing.unmatched" and event["record"]["traveller_name"] == "Third Traveller"
    assert event["cause"]["agency"] == "border"


def test_a_long_poll_through_the_library_returns_the_event_it_waited_for(
    connect: Callable[..., ExchangeClient]
) -> None:
    interior, border = connect("interior"), connect("border")
    start = interior.events.poll().data["next"]
    answers: list[object] = []
    waiter = threading.Thread(target=lambda: answers.append(interior.events.poll(after=start, wait=30).data))
    waiter.start()
    unmatched_entry(border, "Awaited Traveller")
    waiter.join()
    page = answers[0]
    assert isinstance(page, dict)
    assert [e["record"]["traveller_name"] for e in page["events"]] == ["Awaited Traveller"]


def test_a_manifest_hit_on_a_detain_subject_reaches_interior(connect: Callable[..., ExchangeClient]) -> None:
    interior, border = connect("interior"), connect("border")
    subject = interior.returnees.create(returnee_body(risk_level="high")).data
    interior.border_instructions.create({"returnee_id": subject["id"], "instruction": "DETAIN",
                                         "reason": "arrest warrant 17/2026"})
    start = interior.events.poll().data["next"]

    answer = border.screening.manifest([
        {"name": "Gulmurod Khalimov", "birth_date": "1975-05-14", "flight": "FZ 341", "crossing_point": "DYU airport",
         "nationality": "TJ", "expected_arrival": NOW.isoformat()},
        {"name": "Someone Else Entirely", "flight": "FZ 341"},
    ]).data
    assert answer["screened"] == 2 and answer["with_candidates"] == 1
    first, second = answer["travellers"]
    assert first["candidates"][0]["returnee"]["id"] == subject["id"] and second["candidates"] == []
    shown = first["candidates"][0]["returnee"]
    assert shown["active_border_instruction"] == {"instruction": "DETAIN", "valid_until": None}
    assert "risk_level" not in shown

    hits = interior.events.poll(after=start).data["events"]
    assert [e["type"] for e in hits] == ["screening.hit"]
    assert hits[0]["record"]["active_border_instruction"]["instruction"] == "DETAIN"
    assert hits[0]["screening"]["crossing_point"] == "DYU airport" and hits[0]["screening"]["flight"] == "FZ 341"
    assert border.events.poll(after=None).data["events"][-1]["type"] != "screening.hit"  # the border is not told
