"""Need to know on every channel: no filter, total, order, ETag, version, updated_at or error message tells an agency
anything outside its view (domain.md, "Need to know").

The expectations are written down here independently of `exchange.register.policy`; a list parameter added to a query
schema without a decision here fails `test_every_list_parameter_is_decided`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from exchange.register import policy
from exchange.register import schemas as s
from exchange.register.models import STATUSES, Returnee
from exchange.register.views import RESOURCES, RETURNEE_VIEWS
from tests.conftest import AgencyClient
from tests.register.test_lifecycle import (
    created,
    decision_body,
    instruction_body,
    transition,
    vetting_body,
    walk,
)
from tests.register.test_records import hotline_body
from tests.test_app import assert_error

__all__ = ["walk"]  # the lifecycle's fixture, used here

Walk = Callable[[str], dict[str, Any]]
AGENCIES = ("interior", "border", "prosecutor")
T = "2015-06-01T00:00:00Z"

# Every list parameter of every list route, with a valid value in the terms of the agencies that may use it.
SAMPLES: dict[str, dict[str, str]] = {
    "/v1/returnees": {"status": "under_review", "risk_level": "high", "citizenship": "TJ",
                      "register_number": "RT-2015-000001", "updated_since": T},
    "/v1/hotline-contacts": {"returnee_id": str(uuid.uuid4()), "channel": "hotline"},
    "/v1/border-instructions": {"returnee_id": str(uuid.uuid4()), "instruction": "DETAIN", "active_at": T},
    "/v1/border-crossings": {"returnee_id": str(uuid.uuid4()), "crossing_point": "DYU", "direction": "entry",
                             "unmatched": "true", "flagged_for_interior": "false", "occurred_from": T,
                             "occurred_to": T},
    "/v1/vetting-assessments": {"returnee_id": str(uuid.uuid4()), "risk_level": "high"},
    "/v1/prosecutorial-decisions": {"returnee_id": str(uuid.uuid4()), "decision": "no_case", "case_number": "GP-1"},
}
PAGING = {"page": "1", "page_size": "5"}
# (route, parameter) -> the agencies that may NOT use it, because it reads a field outside their view.
REFUSED: dict[tuple[str, str], set[str]] = {
    ("/v1/returnees", "risk_level"): {"border"},  # no risk level for the border
    ("/v1/returnees", "updated_since"): {"border"},  # updated_at moves when interior edits what the border cannot see
    ("/v1/border-instructions", "active_at"): {"border"},  # reads valid_from, which is never the border's
}
# Routes an agency cannot list at all (its tokens carry no scope that reaches them).
NO_SCOPE = {("/v1/hotline-contacts", "border"), ("/v1/vetting-assessments", "border"),
            ("/v1/prosecutorial-decisions", "border")}
ROUTES = sorted(SAMPLES)
CELLS = [(route, param, agency) for route in ROUTES for param in [*SAMPLES[route], *PAGING] for agency in AGENCIES]


def list_parameters(app: Flask) -> dict[str, set[str]]:
    """route -> the query parameters its GET declares, read from the served OpenAPI document."""
    spec = app.test_client().get("/openapi.json").get_json()
    return {
        path: {p["name"] for p in spec["paths"][path]["get"].get("parameters", []) if p["in"] == "query"}
        for path in spec["paths"] if "{" not in path and "get" in spec["paths"][path] and path in SAMPLES
    }


def test_every_list_parameter_is_decided(app: Flask) -> None:
    declared = list_parameters(app)
    assert set(declared) == set(SAMPLES)
    for route, parameters in declared.items():
        assert parameters == set(SAMPLES[route]) | set(PAGING), route


@pytest.mark.parametrize(("route", "param", "agency"), CELLS)
def test_list_parameter_matrix(
    as_agency: Callable[..., AgencyClient], route: str, param: str, agency: str
) -> None:
    """Every list parameter x every agency: refused with 422 naming the parameter where it reads outside the view,
    accepted otherwise (the border's status in its own terms)."""
    client = as_agency(agency)
    value = {**SAMPLES[route], **PAGING}[param]
    if (route, param) == ("/v1/returnees", "status") and agency == "border":
        value = "other"
    response = client.get(route, query_string={param: value})
    body = response.get_json()
    if (route, agency) in NO_SCOPE:
        assert_error(response, 403, "insufficient_scope")
    elif agency in REFUSED.get((route, param), set()):
        assert_error(response, 422, "validation_failed")
        assert set(body["errors"]) == {param}
        assert "outside its view" in body["errors"][param][0]
    else:
        assert response.status_code == 200, body
        assert set(body) == {"items", "page", "page_size", "total", "view"}
        assert body["view"] == agency


def test_refusal_names_every_refused_parameter_and_nothing_is_listed(
    make_returnee: Callable[..., dict[str, Any]], border: AgencyClient
) -> None:
    make_returnee(risk_level="high")
    response = border.get("/v1/returnees", query_string={"risk_level": "high", "updated_since": T, "citizenship": "TJ"})
    body = assert_error(response, 422, "validation_failed")
    assert set(body["errors"]) == {"risk_level", "updated_since"}
    assert "items" not in body and "total" not in body


# ---- the border's status, in its own terms -------------------------------------------------------------------------


def test_border_filters_status_in_its_own_terms(walk: Walk, border: AgencyClient, interior: AgencyClient) -> None:
    by_status = {status: walk(status)["id"] for status in STATUSES}
    coarse = {"expected": {"expected"}, "arrived": {"arrived"},
              "other": set(STATUSES) - {"expected", "arrived"}}
    for term, statuses in coarse.items():
        page = border.get("/v1/returnees", query_string={"status": term, "page_size": 100}).get_json()
        assert {item["id"] for item in page["items"]} == {by_status[s] for s in statuses}
        assert page["total"] == len(statuses)
        assert {item["status"] for item in page["items"]} == {term}
    for real in set(STATUSES) - {"expected", "arrived"}:  # a real status is not a border term
        body = assert_error(border.get("/v1/returnees", query_string={"status": real}), 422, "validation_failed")
        assert set(body["errors"]) == {"status"}
        assert real not in body["errors"]["status"][0]
    # ... and interior's terms are the real statuses
    assert_error(interior.get("/v1/returnees", query_string={"status": "other"}), 422, "validation_failed")
    page = interior.get("/v1/returnees", query_string={"status": "charges_filed"}).get_json()
    assert [item["id"] for item in page["items"]] == [by_status["charges_filed"]]


# ---- nothing the border sees moves when interior changes what it cannot see ----------------------------------------


def border_picture(border: AgencyClient, returnee_id: str) -> dict[str, Any]:
    """Everything the border can learn about one returnee: its view and ETag, its instructions and crossings (items,
    totals and ETags), and every list total under every filter the border may use."""
    picture: dict[str, Any] = {}
    response = border.get(f"/v1/returnees/{returnee_id}")
    picture["returnee"] = (response.get_json(), response.headers["ETag"])
    for route in ("/v1/border-instructions", "/v1/border-crossings"):
        page = border.get(route, query_string={"returnee_id": returnee_id}).get_json()
        picture[route] = page
        for item in page["items"]:
            item_response = border.get(f"{route}/{item['id']}")
            picture[f"{route}/{item['id']}"] = (item_response.get_json(), item_response.headers["ETag"])
    for term in ("expected", "arrived", "other"):
        picture[f"status={term}"] = border.get("/v1/returnees", query_string={"status": term}).get_json()
    picture["all"] = border.get("/v1/returnees").get_json()
    picture["screening"] = border.post("/v1/screening", json={"document_number": "400123456"}).get_json()
    return picture


def test_interior_edits_outside_the_border_view_change_nothing_the_border_sees(
    walk: Walk, interior: AgencyClient, border: AgencyClient, prosecutor: AgencyClient
) -> None:
    returnee = walk("under_vetting")
    rid = returnee["id"]
    instruction = created(interior.post("/v1/border-instructions", json=instruction_body(
        rid, "REFER_TO_INTERIOR", valid_until="2099-01-01T00:00:00Z")))
    before = border_picture(border, rid)
    assert before["returnee"][0]["status"] == "other"

    def patch_returnee(changes: dict[str, Any]) -> None:
        etag = interior.get(f"/v1/returnees/{rid}").headers["ETag"]
        assert interior.patch(f"/v1/returnees/{rid}", json=changes, headers={"If-Match": etag}).status_code == 200

    edits: list[Callable[[], None]] = [
        lambda: patch_returnee({"risk_level": "high"}),
        lambda: patch_returnee({"birth_place": "Kulob", "conflict_history": [{"country": "SY", "from": "2014"}]}),
        lambda: patch_returnee({"accompanying_persons": [{"relation": "son", "full_name": "Ali", "is_minor": True}]}),
        lambda: created(interior.post("/v1/hotline-contacts", json=hotline_body(rid))) and None,
        lambda: created(interior.post("/v1/vetting-assessments", json=vetting_body(rid, risk_level="low"))) and None,
        lambda: interior.patch(f"/v1/border-instructions/{instruction['id']}", json={"reason": "Wanted."},
                               headers={"If-Match": '"1"'}) and None,
        # an instruction that is not (yet) active is not the border's
        lambda: created(interior.post("/v1/border-instructions", json=instruction_body(
            rid, "DETAIN", valid_from="2098-01-01T00:00:00Z"))) and None,
        lambda: created(interior.post("/v1/border-instructions", json=instruction_body(
            rid, "DETAIN", valid_from="2014-01-01T00:00:00Z", valid_until="2014-06-01T00:00:00Z"))) and None,
        lambda: transition(interior, {"id": rid}, "vetted") and None,
        lambda: transition(interior, {"id": rid}, "under_review") and None,
        lambda: created(prosecutor.post("/v1/prosecutorial-decisions",
                                        json=decision_body(rid, "charges_filed"))) and None,
        lambda: transition(interior, {"id": rid}, "closed") and None,
    ]
    for number, edit in enumerate(edits):
        edit()
        assert border_picture(border, rid) == before, f"edit {number} showed through to the border"
    after = interior.get(f"/v1/returnees/{rid}").get_json()
    assert (after["status"], after["risk_level"]) == ("closed", "low")
    assert after["version"] > returnee["version"]


def test_border_cannot_tell_two_returnees_apart_by_hidden_fields(
    walk: Walk, interior: AgencyClient, border: AgencyClient
) -> None:
    """Two returnees alike in everything the border sees, unlike in everything it does not: every list, total and
    message treats them alike (their ids and register numbers aside)."""
    quiet = walk("arrived")
    loud = walk("arrived")
    for to in ("under_vetting",):
        for rid in (quiet["id"], loud["id"]):
            assert transition(interior, {"id": rid}, to).status_code == 200
    etag = interior.get(f"/v1/returnees/{loud['id']}").headers["ETag"]
    assert interior.patch(f"/v1/returnees/{loud['id']}", json={"risk_level": "high", "birth_place": "Raqqa"},
                          headers={"If-Match": etag}).status_code == 200
    created(interior.post("/v1/hotline-contacts", json=hotline_body(loud["id"])))
    for term in ("expected", "arrived", "other"):
        page = border.get("/v1/returnees", query_string={"status": term}).get_json()
        assert (quiet["id"] in {i["id"] for i in page["items"]}) == (loud["id"] in {i["id"] for i in page["items"]})
    views = []
    for rid in (quiet["id"], loud["id"]):
        seen = border.get(f"/v1/returnees/{rid}").get_json()
        views.append({k: v for k, v in seen.items() if k not in ("id", "register_number", "border_crossings",
                                                                   "created_at")})
        refusal = transition(border, {"id": rid}, "closed")
        views.append((refusal.status_code, {k: v for k, v in refusal.get_json().items() if k != "request_id"}))
    assert views[0] == views[2] and views[1] == views[3]


def test_prosecutor_sees_nothing_move_when_h1_findings_change(
    walk: Walk, interior: AgencyClient, prosecutor: AgencyClient
) -> None:
    rid = walk("under_vetting")["id"]
    assessment = created(interior.post("/v1/vetting-assessments", json=vetting_body(rid, handling_code="H1")))
    path = f"/v1/vetting-assessments/{assessment['id']}"

    def seen() -> tuple[Any, ...]:
        item = prosecutor.get(path)
        returnee = prosecutor.get(f"/v1/returnees/{rid}")
        return (item.get_json(), item.headers["ETag"], returnee.get_json(), returnee.headers["ETag"],
                prosecutor.get("/v1/vetting-assessments", query_string={"returnee_id": rid}).get_json())

    before = seen()
    assert "findings" not in before[0] and "version" not in before[0] and before[1].startswith('"v-')
    assert interior.patch(path, json={"findings": "He named his recruiter."},
                          headers={"If-Match": '"1"'}).status_code == 200
    assert seen() == before
    # lifting H1 is a change the prosecutor sees, findings and all
    assert interior.patch(path, json={"handling_code": "H0"}, headers={"If-Match": '"2"'}).status_code == 200
    after = prosecutor.get(path)
    assert after.get_json()["findings"] == "He named his recruiter."
    assert (after.get_json()["version"], after.headers["ETag"]) == (3, '"3"')


# ---- transitions: refused in words that name only what the agency may see ------------------------------------------


@pytest.mark.parametrize("agency", ["border", "prosecutor"])
def test_transition_by_an_agency_that_moves_by_recording_names_no_status(
    walk: Walk, as_agency: Callable[..., AgencyClient], interior: AgencyClient, agency: str
) -> None:
    client = as_agency(agency)
    answers = set()
    digests = set()
    for status in STATUSES:
        before = walk(status)
        for to in STATUSES:
            for etag in (None, f'"{before["version"]}"', f'"{before["version"] + 1}"', '"1"', "*"):
                response = transition(client, before, to, etag=etag)
                body = assert_error(response, 409, "invalid_transition")
                assert "ETag" not in response.headers
                answers.add((body["message"].replace(repr(to), "<to>"), str(body.get("errors"))))
            # a tag that is no version is refused alike for every returnee, before it is looked at
            body = assert_error(transition(client, before, to, etag='"v-0"'), 412, "precondition_failed")
            digests.add(body["message"])
        after = interior.get(f"/v1/returnees/{before['id']}").get_json()
        assert (after["status"], after["version"]) == (status, before["version"])
    # one answer, whatever the status or version: nothing in it tells them apart
    assert len(answers) == 1 and len(digests) == 1
    message = next(iter(answers))[0]
    assert not any(re.search(rf"\b{status}\b", message) for status in STATUSES)


def test_transition_of_unknown_returnee_is_404_for_every_register_agency(
    as_agency: Callable[..., AgencyClient]
) -> None:
    for agency in AGENCIES:
        response = as_agency(agency).post(f"/v1/returnees/{uuid.uuid4()}/transitions", json={"to": "closed"})
        assert_error(response, 404, "not_found")


def test_a_view_digest_is_no_version(walk: Walk, interior: AgencyClient, border: AgencyClient) -> None:
    returnee = walk("arrived")
    tag = border.get(f"/v1/returnees/{returnee['id']}").headers["ETag"]
    assert re.fullmatch(r'"v-[0-9a-f]{32}"', tag)
    response = interior.patch(f"/v1/returnees/{returnee['id']}", json={"risk_level": "high"},
                              headers={"If-Match": tag})
    assert_error(response, 412, "precondition_failed")
    assert interior.get(f"/v1/returnees/{returnee['id']}").get_json()["version"] == returnee["version"]


# ---- the border's instructions: the active one, nothing else --------------------------------------------------------


def test_border_sees_only_the_active_instruction(
    make_returnee: Callable[..., dict[str, Any]], interior: AgencyClient, border: AgencyClient,
    prosecutor: AgencyClient
) -> None:
    rid = make_returnee()["id"]
    past = created(interior.post("/v1/border-instructions", json=instruction_body(
        rid, "DETAIN", valid_from="2014-01-01T00:00:00Z", valid_until="2014-06-01T00:00:00Z")))
    older = created(interior.post("/v1/border-instructions", json=instruction_body(
        rid, "NOTIFY_ONLY", valid_from="2015-01-01T00:00:00Z")))
    active = created(interior.post("/v1/border-instructions", json=instruction_body(
        rid, "REFER_TO_INTERIOR", valid_from="2015-02-01T00:00:00Z")))
    future = created(interior.post("/v1/border-instructions", json=instruction_body(
        rid, "DETAIN", valid_from="2098-01-01T00:00:00Z")))
    page = border.get("/v1/border-instructions", query_string={"returnee_id": rid}).get_json()
    assert ([i["id"] for i in page["items"]], page["total"]) == ([active["id"]], 1)
    assert border.get(f"/v1/returnees/{rid}").get_json()["active_border_instruction"]["instruction"] == (
        "REFER_TO_INTERIOR")
    assert border.get("/v1/border-instructions", query_string={"instruction": "DETAIN"}).get_json()["total"] == 0
    unknown = assert_error(border.get(f"/v1/border-instructions/{uuid.uuid4()}"), 404, "not_found")
    for hidden in (past, older, future):
        body = assert_error(border.get(f"/v1/border-instructions/{hidden['id']}"), 404, "not_found")
        assert body["message"].replace(hidden["id"], "<id>") == unknown["message"].rsplit(" ", 1)[0] + " <id>."
    for client in (interior, prosecutor):
        assert client.get("/v1/border-instructions", query_string={"returnee_id": rid}).get_json()["total"] == 4


# ---- the table is the one source ------------------------------------------------------------------------------------


def test_views_are_the_table(app: Flask) -> None:
    schemas = app.test_client().get("/openapi.json").get_json()["components"]["schemas"]
    kinds = [(Returnee, RETURNEE_VIEWS), *((r.model, r.views) for r in RESOURCES)]
    for model, views in kinds:
        for agency in AGENCIES:
            shown = policy.shown(model, agency)
            if not shown:
                assert agency not in views
                continue
            view = views[agency]
            extra = {f"{name}_withheld" for name, way in shown.items()
                     if way == policy.UNLESS_H1 and name not in policy.BOOKKEEPING}
            assert set(view._declared_fields) == set(shown) | extra, (model, agency)
            assert set(schemas[view.__name__]["properties"]) == set(shown) | extra, (model, agency)
    border = schemas[s.BorderReturneeView.__name__]["properties"]
    assert border["status"]["enum"] == ["expected", "arrived", "other"]
    assert not {"version", "updated_at", "risk_level"} & set(border)
