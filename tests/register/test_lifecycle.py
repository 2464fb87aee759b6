"""The returnee lifecycle of domain.md: every allowed move, made the way the spec says, and every other refused.

Interior moves a returnee with explicit transition requests and by issuing ASSIST_RETURN; the border by recording an
entry crossing; the prosecutor by recording a decision. Anything else on the transitions endpoint is 409
`invalid_transition` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from exchange.register.lifecycle import _ALLOWED, Via
from exchange.register.models import STATUSES
from tests.conftest import AgencyClient, refusal_code
from tests.test_app import assert_error

MakeReturnee = Callable[..., dict[str, Any]]
Walk = Callable[[str], dict[str, Any]]

AGENCIES = ("interior", "border", "prosecutor")
AT = "2015-06-01T10:00:00Z"
UNKNOWN_ID = "6f1c1f38-5d4e-4c36-9b59-8a4ef1f7b7a1"
NOT_CLOSED = tuple(s for s in STATUSES if s != "closed")

# domain.md, "Lifecycle": the moves interior makes with an explicit transition request.
EXPLICIT: frozenset[tuple[str, str]] = frozenset(
    {
        ("arrived", "under_vetting"),
        ("under_vetting", "vetted"),
        ("vetted", "under_review"),
        ("amnesty_granted", "reintegrating"),
        *((status, "closed") for status in NOT_CLOSED),
    }
)
# ... and the moves made by recording something, with who records it.
BY_RECORDING: dict[tuple[str, str], tuple[str, Via]] = {
    ("reported", "expected"): ("interior", Via.INSTRUCTION),
    ("reported", "arrived"): ("border", Via.CROSSING),
    ("expected", "arrived"): ("border", Via.CROSSING),
    ("under_review", "amnesty_granted"): ("prosecutor", Via.DECISION),
    ("under_review", "charges_filed"): ("prosecutor", Via.DECISION),
    ("under_review", "under_vetting"): ("prosecutor", Via.DECISION),
}
# How the walk reaches each status: from which predecessor (the shortest way the spec allows).
PREDECESSOR = {
    "expected": "reported",
    "arrived": "expected",
    "under_vetting": "arrived",
    "vetted": "under_vetting",
    "under_review": "vetted",
    "amnesty_granted": "under_review",
    "charges_filed": "under_review",
    "reintegrating": "amnesty_granted",
    "closed": "reported",
}
DECISION_FOR = {"amnesty_granted": "amnesty_granted", "charges_filed": "charges_filed"}


# ---- helpers -------------------------------------------------------------------------------------------------------


def instruction_body(returnee_id: str, instruction: str = "ASSIST_RETURN", **overrides: Any) -> dict[str, Any]:
    return {"returnee_id": returnee_id, "instruction": instruction, "reason": "Called the hotline; wants to return.",
            **overrides}


def crossing_body(returnee_id: str, direction: str = "entry", **overrides: Any) -> dict[str, Any]:
    return {"returnee_id": returnee_id, "crossing_point": "DYU airport", "direction": direction, "occurred_at": AT,
            "outcome": "admitted", **overrides}


def vetting_body(returnee_id: str, **overrides: Any) -> dict[str, Any]:
    return {"returnee_id": returnee_id, "interviewed_at": AT, "genuine_repentance": "yes", "risk_level": "medium",
            "findings": "Left Raqqa in May; consistent account.", "source_reliability": "B",
            "information_accuracy": "2", **overrides}


def decision_body(returnee_id: str, decision: str, **overrides: Any) -> dict[str, Any]:
    return {"returnee_id": returnee_id, "decision": decision, "case_number": "GP-2015-0042", "decided_at": AT,
            "statute": "Criminal Code art. 401-1", **overrides}


def created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.get_json()
    data: dict[str, Any] = response.get_json()
    return data


def read(client: AgencyClient, returnee_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/returnees/{returnee_id}")
    assert response.status_code == 200, response.get_json()
    data: dict[str, Any] = response.get_json()
    data["_etag"] = response.headers["ETag"]
    return data


def transition(client: AgencyClient, returnee: dict[str, Any], to: str, *, etag: str | None = None) -> Any:
    headers = {"If-Match": etag} if etag else {}
    return client.post(f"/v1/returnees/{returnee['id']}/transitions", json={"to": to}, headers=headers)


def count(client: AgencyClient, path: str, returnee_id: str) -> int:
    response = client.get(f"{path}?returnee_id={returnee_id}")
    assert response.status_code == 200, response.get_json()
    total: int = response.get_json()["total"]
    return total


def snapshot(returnee: dict[str, Any]) -> tuple[Any, ...]:
    return returnee["status"], returnee["version"], returnee["updated_at"], returnee["risk_level"]


@pytest.fixture
def walk(make_returnee: MakeReturnee, interior: AgencyClient, border: AgencyClient,
         prosecutor: AgencyClient) -> Walk:
    """Factory: a fresh returnee brought to `status` through the API, the way the spec says; its interior view."""

    def step(returnee_id: str, to: str) -> None:
        if to == "expected":
            created(interior.post("/v1/border-instructions", json=instruction_body(returnee_id)))
        elif to == "arrived":
            created(border.post("/v1/border-crossings", json=crossing_body(returnee_id)))
        elif to in DECISION_FOR:
            created(prosecutor.post("/v1/prosecutorial-decisions", json=decision_body(returnee_id, DECISION_FOR[to])))
        else:
            if to == "vetted":
                created(interior.post("/v1/vetting-assessments", json=vetting_body(returnee_id)))
            response = interior.post(f"/v1/returnees/{returnee_id}/transitions", json={"to": to})
            assert response.status_code == 200, response.get_json()

    def go(status: str) -> dict[str, Any]:
        path: list[str] = []
        while status != "reported":
            path.append(status)
            status = PREDECESSOR[status]
        returnee_id = make_returnee()["id"]
        for to in reversed(path):
            step(returnee_id, to)
        return read(interior, returnee_id)

    return go


# ---- the table itself ----------------------------------------------------------------------------------------------


def test_lifecycle_table_is_the_one_of_the_spec() -> None:
    explicit = {move for move, rule in _ALLOWED.items() if rule == ("interior", Via.TRANSITION)}
    assert explicit == EXPLICIT
    assert {move: rule for move, rule in _ALLOWED.items() if rule[1] is not Via.TRANSITION} == BY_RECORDING
    assert set(_ALLOWED) == EXPLICIT | set(BY_RECORDING)


@pytest.mark.parametrize("status", STATUSES)
def test_walk_reaches_every_status(walk: Walk, status: str) -> None:
    assert walk(status)["status"] == status


# ---- moves interior makes ------------------------------------------------------------------------------------------


def test_explicit_transition_returns_new_status_and_bumps_version(walk: Walk, interior: AgencyClient) -> None:
    before = walk("arrived")
    response = transition(interior, before, "under_vetting", etag=before["_etag"])
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert (data["status"], data["version"]) == ("under_vetting", before["version"] + 1)
    assert response.headers["ETag"] == f'"{before["version"] + 1}"'
    assert read(interior, before["id"])["status"] == "under_vetting"


def test_transition_without_if_match_is_allowed(walk: Walk, interior: AgencyClient) -> None:
    before = walk("arrived")
    assert transition(interior, before, "under_vetting").status_code == 200


def test_assist_return_makes_reported_expected(make_returnee: MakeReturnee, interior: AgencyClient) -> None:
    before = make_returnee()
    created(interior.post("/v1/border-instructions", json=instruction_body(before["id"])))
    after = read(interior, before["id"])
    assert (after["status"], after["version"]) == ("expected", before["version"] + 1)
    assert after["active_border_instruction"]["instruction"] == "ASSIST_RETURN"


@pytest.mark.parametrize("instruction", ["REFER_TO_INTERIOR", "DETAIN", "NOTIFY_ONLY"])
def test_other_instructions_leave_reported(
    make_returnee: MakeReturnee, interior: AgencyClient, instruction: str
) -> None:
    before = make_returnee()
    created(interior.post("/v1/border-instructions", json=instruction_body(before["id"], instruction)))
    assert snapshot(read(interior, before["id"])) == snapshot(before)


@pytest.mark.parametrize("status", ["expected", "arrived", "under_vetting", "reintegrating"])
def test_assist_return_leaves_other_statuses(walk: Walk, interior: AgencyClient, status: str) -> None:
    before = walk(status)
    created(interior.post("/v1/border-instructions", json=instruction_body(before["id"])))
    assert read(interior, before["id"])["status"] == status


def test_vetted_is_refused_until_an_assessment_exists(walk: Walk, interior: AgencyClient) -> None:
    before = walk("under_vetting")
    assert_error(transition(interior, before, "vetted", etag=before["_etag"]), 409, "invalid_transition")
    assert snapshot(read(interior, before["id"])) == snapshot(before)
    created(interior.post("/v1/vetting-assessments", json=vetting_body(before["id"])))
    current = read(interior, before["id"])
    response = transition(interior, current, "vetted", etag=current["_etag"])
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "vetted"


def test_amnesty_path_to_the_end(walk: Walk, interior: AgencyClient) -> None:
    returnee = walk("amnesty_granted")
    for to in ("reintegrating", "closed"):
        response = transition(interior, returnee, to, etag=returnee["_etag"])
        assert response.status_code == 200, response.get_json()
        returnee = read(interior, returnee["id"])
        assert returnee["status"] == to


def test_charges_filed_may_be_closed(walk: Walk, interior: AgencyClient) -> None:
    returnee = walk("charges_filed")
    assert transition(interior, returnee, "closed", etag=returnee["_etag"]).status_code == 200
    assert read(interior, returnee["id"])["status"] == "closed"


@pytest.mark.parametrize("status", NOT_CLOSED)
def test_interior_may_close_from_every_open_status(walk: Walk, interior: AgencyClient, status: str) -> None:
    before = walk(status)
    response = transition(interior, before, "closed", etag=before["_etag"])
    assert response.status_code == 200, response.get_json()
    after = read(interior, before["id"])
    assert (after["status"], after["version"]) == ("closed", before["version"] + 1)


# ---- moves the border makes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["reported", "expected"])
def test_entry_crossing_makes_returnee_arrived(
    walk: Walk, border: AgencyClient, interior: AgencyClient, status: str
) -> None:
    before = walk(status)
    crossing = created(border.post("/v1/border-crossings", json=crossing_body(before["id"])))
    assert crossing["returnee_id"] == before["id"] and crossing["matched"] is True
    assert crossing["flagged_for_interior"] is False
    after = read(interior, before["id"])
    assert (after["status"], after["version"]) == ("arrived", before["version"] + 1)


@pytest.mark.parametrize("status", ["reported", "expected"])
def test_exit_crossing_leaves_status(walk: Walk, border: AgencyClient, interior: AgencyClient, status: str) -> None:
    before = walk(status)
    created(border.post("/v1/border-crossings", json=crossing_body(before["id"], direction="exit")))
    assert read(interior, before["id"])["status"] == status


@pytest.mark.parametrize("status", ["arrived", "under_vetting", "amnesty_granted", "reintegrating"])
def test_entry_crossing_leaves_later_statuses(
    walk: Walk, border: AgencyClient, interior: AgencyClient, status: str
) -> None:
    before = walk(status)
    created(border.post("/v1/border-crossings", json=crossing_body(before["id"])))
    assert read(interior, before["id"])["status"] == status


def test_crossing_for_closed_returnee_is_kept_for_interior(
    walk: Walk, border: AgencyClient, interior: AgencyClient
) -> None:
    # The border sees a closed file as `other`, like any later status: a refusal, or any difference it can see,
    # would tell it the file is closed. The crossing is kept as for any `other` file and the returnee stays closed.
    seen = {}
    for status in ("closed", "under_vetting"):
        before = walk(status)
        crossings = count(interior, "/v1/border-crossings", before["id"])
        crossing = created(border.post("/v1/border-crossings", json=crossing_body(
            before["id"], emergency_document_number="ETD-77")))
        assert crossing["returnee_id"] == before["id"]
        assert read(interior, before["id"])["status"] == status
        assert count(interior, "/v1/border-crossings", before["id"]) == crossings + 1
        shown = read(border, before["id"])
        seen[status] = (crossing["flagged_for_interior"], crossing["matched"], shown["status"],
                        [i["id"] for i in shown["identifications"]])
    assert seen["closed"] == seen["under_vetting"] == (False, True, "other", ["400123456", "ETD-77"])

    # interior, who sees the status, is still refused a link of an unmatched crossing to the closed file
    closed = walk("closed")
    unmatched = created(border.post("/v1/border-crossings", json=crossing_body(
        None, traveller_name="Gulmurod Halimov")))
    assert_error(interior.patch(f"/v1/border-crossings/{unmatched['id']}", json={"returnee_id": closed["id"]},
                                headers={"If-Match": '"1"'}), 409, "invalid_state")
    assert snapshot(read(interior, closed["id"])) == snapshot(closed)


def test_instruction_for_closed_returnee_is_refused(walk: Walk, interior: AgencyClient) -> None:
    before = walk("closed")
    assert_error(interior.post("/v1/border-instructions", json=instruction_body(before["id"])), 409,
                 "invalid_state")
    assert snapshot(read(interior, before["id"])) == snapshot(before)
    assert count(interior, "/v1/border-instructions", before["id"]) == 0


# ---- moves the prosecutor makes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decision", "status"),
    [
        ("amnesty_granted", "amnesty_granted"),
        ("charges_filed", "charges_filed"),
        ("returned_for_vetting", "under_vetting"),
        ("no_case", "under_review"),
    ],
)
def test_decision_moves_returnee(
    walk: Walk, prosecutor: AgencyClient, interior: AgencyClient, decision: str, status: str
) -> None:
    before = walk("under_review")
    record = created(prosecutor.post("/v1/prosecutorial-decisions", json=decision_body(before["id"], decision)))
    assert (record["decision"], record["returnee_id"]) == (decision, before["id"])
    assert read(interior, before["id"])["status"] == status
    assert count(interior, "/v1/prosecutorial-decisions", before["id"]) == 1


def test_returned_for_vetting_goes_round_again(
    walk: Walk, prosecutor: AgencyClient, interior: AgencyClient
) -> None:
    returnee = walk("under_review")
    created(prosecutor.post("/v1/prosecutorial-decisions", json=decision_body(returnee["id"], "returned_for_vetting")))
    assert read(interior, returnee["id"])["status"] == "under_vetting"
    created(interior.post("/v1/vetting-assessments", json=vetting_body(returnee["id"], risk_level="low")))
    for to in ("vetted", "under_review"):
        assert transition(interior, returnee, to).status_code == 200
    created(prosecutor.post("/v1/prosecutorial-decisions", json=decision_body(returnee["id"], "amnesty_granted")))
    after = read(interior, returnee["id"])
    assert (after["status"], after["risk_level"]) == ("amnesty_granted", "low")
    assert [d["decision"] for d in after["prosecutorial_decisions"]] == ["returned_for_vetting", "amnesty_granted"]


def test_no_case_then_another_decision(walk: Walk, prosecutor: AgencyClient, interior: AgencyClient) -> None:
    returnee = walk("under_review")
    created(prosecutor.post("/v1/prosecutorial-decisions", json=decision_body(returnee["id"], "no_case")))
    assert read(interior, returnee["id"])["status"] == "under_review"
    created(prosecutor.post("/v1/prosecutorial-decisions", json=decision_body(returnee["id"], "charges_filed")))
    assert read(interior, returnee["id"])["status"] == "charges_filed"


@pytest.mark.parametrize("status", ["reported", "arrived", "under_vetting", "vetted", "amnesty_granted",
                                    "charges_filed", "closed"])
@pytest.mark.parametrize("decision", ["amnesty_granted", "no_case"])
def test_decision_outside_under_review_is_refused(
    walk: Walk, prosecutor: AgencyClient, interior: AgencyClient, status: str, decision: str
) -> None:
    before = walk(status)
    decisions_before = count(interior, "/v1/prosecutorial-decisions", before["id"])
    response = prosecutor.post("/v1/prosecutorial-decisions", json=decision_body(before["id"], decision))
    assert_error(response, 409, "invalid_transition")
    assert snapshot(read(interior, before["id"])) == snapshot(before)
    assert count(interior, "/v1/prosecutorial-decisions", before["id"]) == decisions_before


@pytest.mark.parametrize("status", ["reported", "arrived", "vetted", "under_review", "closed"])
def test_vetting_outside_under_vetting_is_refused(walk: Walk, interior: AgencyClient, status: str) -> None:
    before = walk(status)
    assessments_before = count(interior, "/v1/vetting-assessments", before["id"])
    response = interior.post("/v1/vetting-assessments", json=vetting_body(before["id"], risk_level="high"))
    assert_error(response, 409, "invalid_state")
    assert snapshot(read(interior, before["id"])) == snapshot(before)
    assert count(interior, "/v1/vetting-assessments", before["id"]) == assessments_before


# ---- moves by the wrong agency or the wrong way --------------------------------------------------------------------


def test_only_the_owning_agency_records_the_moving_records(
    walk: Walk, interior: AgencyClient, border: AgencyClient, prosecutor: AgencyClient
) -> None:
    reported = walk("reported")
    under_review = walk("under_review")
    for client in (border, prosecutor):
        assert_error(client.post("/v1/border-instructions", json=instruction_body(reported["id"])), 403,
                     refusal_code(client, "POST", "/v1/border-instructions"))
    for client in (interior, prosecutor):
        assert_error(client.post("/v1/border-crossings", json=crossing_body(reported["id"])), 403,
                     refusal_code(client, "POST", "/v1/border-crossings"))
    for client in (interior, border):
        assert_error(client.post("/v1/prosecutorial-decisions",
                                 json=decision_body(under_review["id"], "amnesty_granted")), 403,
                     refusal_code(client, "POST", "/v1/prosecutorial-decisions"))
    assert snapshot(read(interior, reported["id"])) == snapshot(reported)
    assert snapshot(read(interior, under_review["id"])) == snapshot(under_review)
    assert count(interior, "/v1/border-instructions", reported["id"]) == 0
    assert count(interior, "/v1/border-crossings", reported["id"]) == 0
    assert count(interior, "/v1/prosecutorial-decisions", under_review["id"]) == 0


@pytest.mark.parametrize("agency", ["auditor", "security"])
def test_non_register_agencies_may_not_transition(
    walk: Walk, as_agency: Callable[..., AgencyClient], interior: AgencyClient, agency: str
) -> None:
    before = walk("arrived")
    client = as_agency(agency)
    # their tokens carry no register scope, so they are refused before the lifecycle is consulted
    assert_error(transition(client, before, "under_vetting"), 403, "insufficient_scope")
    assert_error(transition(client, before, "closed", etag=before["_etag"]), 403, "insufficient_scope")
    assert_error(client.post(f"/v1/returnees/{UNKNOWN_ID}/transitions", json={"to": "closed"}), 403,
                 "insufficient_scope")
    assert snapshot(read(interior, before["id"])) == snapshot(before)


def test_stale_transition_is_412_and_changes_nothing(walk: Walk, interior: AgencyClient) -> None:
    before = walk("arrived")
    stale = f'"{before["version"] - 1}"'
    assert_error(transition(interior, before, "under_vetting", etag=stale), 412, "precondition_failed")
    assert snapshot(read(interior, before["id"])) == snapshot(before)


def test_transition_of_unknown_returnee_is_404(interior: AgencyClient) -> None:
    assert_error(interior.post(f"/v1/returnees/{UNKNOWN_ID}/transitions", json={"to": "closed"}), 404, "not_found")


@pytest.mark.parametrize("body", [{"to": "sleeping"}, {}, {"to": "closed", "reason": "x"}, {"to": None}])
def test_bad_transition_body_is_422(walk: Walk, interior: AgencyClient, body: dict[str, Any]) -> None:
    before = walk("arrived")
    response = interior.post(f"/v1/returnees/{before['id']}/transitions", json=body)
    assert_error(response, 422, "validation_failed")
    assert snapshot(read(interior, before["id"])) == snapshot(before)


# ---- the refusal table: every (status, target, agency) not allowed on the transitions endpoint ------------------
# One test per (status, target); the three agencies try in turn on the same walked returnee. That is sound because
# every refusal is checked to leave the returnee exactly as it was, and it keeps the table fast (a walk per agency
# would triple the run time for no extra coverage).


def refusing_agencies(status: str, to: str) -> tuple[str, ...]:
    return tuple(agency for agency in AGENCIES if not (agency == "interior" and (status, to) in EXPLICIT))


REFUSALS = [(status, to) for status in STATUSES for to in STATUSES]


def test_refusal_table_covers_every_status_target_and_agency() -> None:
    cases = {(status, to, agency) for status, to in REFUSALS for agency in refusing_agencies(status, to)}
    assert len(cases) == len(STATUSES) ** 2 * len(AGENCIES) - len(EXPLICIT)


@pytest.mark.parametrize(("status", "to"), REFUSALS)
def test_transition_outside_the_table_is_refused(
    walk: Walk, as_agency: Callable[..., AgencyClient], interior: AgencyClient, status: str, to: str
) -> None:
    before = walk(status)
    outcomes: dict[str, tuple[int, str | None, bool]] = {}
    for agency in refusing_agencies(status, to):
        response = transition(as_agency(agency), before, to, etag=before["_etag"])
        after = read(interior, before["id"])
        unchanged = snapshot(after) == snapshot(before) and after["_etag"] == before["_etag"]
        outcomes[agency] = (response.status_code, response.get_json().get("code"), unchanged)
    assert outcomes == {agency: (409, "invalid_transition", True) for agency in refusing_agencies(status, to)}
