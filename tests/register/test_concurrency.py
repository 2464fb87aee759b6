"""Concurrent writers, for real: threads each with their own request, session and database connection."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.conftest import AgencyClient, returnee_body

MakeReturnee = Callable[..., dict[str, Any]]


def test_concurrent_registrations_get_distinct_sequential_numbers(as_agency: Callable[..., AgencyClient]) -> None:
    def register(_: int) -> Any:
        return as_agency("interior").post("/v1/returnees", json=returnee_body())

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(register, range(24)))
    assert [r.status_code for r in responses] == [201] * 24
    numbers = sorted(int(r.get_json()["register_number"][-6:]) for r in responses)
    assert numbers == list(range(1, 25))


def test_given_number_moves_the_counter_past_it(interior: AgencyClient) -> None:
    interior.post("/v1/returnees", json=returnee_body(register_number="RT-2026-000500"))
    interior.post("/v1/returnees", json=returnee_body(register_number="RT-2026-000007"))
    allocated = interior.post("/v1/returnees", json=returnee_body()).get_json()["register_number"]
    year = allocated[3:7]
    if year == "2026":
        assert allocated == "RT-2026-000501"
    else:  # the clock's year moved on: that year's counter is independent
        assert allocated.endswith("-000001")


def test_concurrent_writes_with_the_same_if_match_let_exactly_one_win(
    make_returnee: MakeReturnee, as_agency: Callable[..., AgencyClient]
) -> None:
    created = make_returnee()
    path = f"/v1/returnees/{created['id']}"
    # every write a real change (the record is created `unknown`): a write of the value the record already holds makes
    # no new version, so it and a real change sent with the same If-Match may both rightly succeed (README: PATCH)
    levels = ["low", "medium", "high", "low", "medium", "high"]

    def write(level: str) -> Any:
        return as_agency("interior").patch(path, json={"risk_level": level}, headers={"If-Match": '"1"'})

    with ThreadPoolExecutor(max_workers=len(levels)) as pool:
        responses = list(pool.map(write, levels))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * (len(levels) - 1)
    assert all(r.get_json()["code"] == "precondition_failed" for r in responses if r.status_code == 412)
    winner = next(r.get_json() for r in responses if r.status_code == 200)
    current = as_agency("interior").get(path).get_json()
    assert (current["version"], current["risk_level"]) == (2, winner["risk_level"])
