"""The auditors' endpoints: who may call them, what they answer, and that every call is itself audited."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from exchange.audit import recorder
from exchange.audit.services import EXPORT_FORMAT
from exchange.protocol import merkle
from exchange.protocol.checkpoint import SignedCheckpoint, verify_checkpoint
from exchange.protocol.merkle import ConsistencyProof, InclusionProof, verify_consistency, verify_inclusion
from exchange.protocol.policy import AGENCY_SCOPES
from tests.audit.conftest import fill, stored_entries, stored_leaves
from tests.conftest import AgencyClient, returnee_body

ROUTES = ["/v1/audit/checkpoint", "/v1/audit/entries?start=0", "/v1/audit/proofs/inclusion?index=0&size=1",
          "/v1/audit/proofs/consistency?old=0&new=0", "/v1/audit/search", "/v1/audit/export"]


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = response.get_json()
    assert (response.status_code, body["code"]) == (status, code), body
    return body


def checkpoint_of(app: Flask, client: AgencyClient) -> SignedCheckpoint:
    response = client.get("/v1/audit/checkpoint")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return verify_checkpoint(response.get_data(as_text=True), recorder.verifiers(app), origin=recorder.origin(app))


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("agency", sorted(AGENCY_SCOPES))
def test_only_auditors_read_the_log(app: Flask, as_agency: Callable[..., AgencyClient], agency: str,
                                    route: str) -> None:
    fill(app, 1)
    response = as_agency(agency).get(route)
    entry = stored_entries(app)[-1]
    assert entry["index"] == 1
    if agency == "auditor":
        assert response.status_code == 200
        assert (entry["action"], entry["outcome"]) == ("audit.read", "success")
    else:
        assert_error(response, 403, "insufficient_scope")
        assert (entry["action"], entry["agency"], entry["reason"]) == ("deny", agency, "insufficient_scope")


def test_the_scope_alone_does_not_make_an_auditor(app: Flask, as_agency: Callable[..., AgencyClient]) -> None:
    nosy = as_agency("interior", scopes=frozenset({"audit:read", "returnees:read"}))
    assert_error(nosy.get("/v1/audit/search"), 403, "not_permitted")
    wrong_purpose = as_agency("auditor", purpose="curiosity")
    assert_error(wrong_purpose.get("/v1/audit/checkpoint"), 403, "purpose_not_allowed")
    assert [(e["action"], e["reason"]) for e in stored_entries(app)] == [
        ("deny", "not_permitted"), ("deny", "purpose_not_allowed")]


def test_checkpoint_is_signed_and_new_only_when_the_log_grew(app: Flask, auditor: AgencyClient) -> None:
    fill(app, 5)
    first = checkpoint_of(app, auditor)
    assert first.size == 5, "covers everything before this call"
    leaves = stored_leaves(app)
    assert first.root == merkle.root_of(merkle.leaf_hash(leaf) for leaf in leaves[:5])
    second = checkpoint_of(app, auditor)
    assert second.size == 6, "the first call's own entry made the log grow"
    entries = stored_entries(app)
    assert [e["prev_checkpoint_size"] for e in entries] == [0, 0, 0, 0, 0, 5, 6]
    assert entries[5]["action"] == "audit.read" and entries[5]["path"] == "/v1/audit/checkpoint"


def test_entries_are_paged_at_1000(app: Flask, auditor: AgencyClient) -> None:
    fill(app, 1100)
    body = auditor.get("/v1/audit/entries?start=50").get_json()
    assert (body["start"], body["end"], body["size"], len(body["entries"])) == (50, 1050, 1100, 1000)
    leaves = stored_leaves(app)
    assert [b64d(e["leaf"]) for e in body["entries"]] == leaves[50:1050]
    assert all(b64d(e["leaf_hash"]) == merkle.leaf_hash(b64d(e["leaf"])) for e in body["entries"])
    body = auditor.get("/v1/audit/entries?start=1090&end=1095").get_json()
    assert [e["index"] for e in body["entries"]] == [1090, 1091, 1092, 1093, 1094]
    size = len(stored_leaves(app))
    assert auditor.get(f"/v1/audit/entries?start={size}").get_json()["entries"] == []
    assert_error(auditor.get("/v1/audit/entries?start=5&end=4000"), 422, "validation_failed")
    assert_error(auditor.get("/v1/audit/entries?start=9&end=5"), 422, "validation_failed")
    assert_error(auditor.get("/v1/audit/entries"), 422, "validation_failed")
    body = assert_error(auditor.get("/v1/audit/entries?start=0&limit=3"), 422, "validation_failed")
    assert "limit" in body["errors"]


def test_inclusion_and_consistency_proofs_verify_against_checkpoints(app: Flask, auditor: AgencyClient) -> None:
    fill(app, 37)
    old = checkpoint_of(app, auditor)
    fill(app, 60, start=37)
    new = checkpoint_of(app, auditor)
    assert (old.size, new.size) == (37, 98)
    leaves = stored_leaves(app)
    for index in (0, 17, 36, 37, 96):
        body = auditor.get(f"/v1/audit/proofs/inclusion?index={index}&size={new.size}").get_json()
        assert b64d(body["leaf_hash"]) == merkle.leaf_hash(leaves[index])
        proof = InclusionProof(index=index, size=new.size, hashes=tuple(b64d(h) for h in body["hashes"]))
        verify_inclusion(proof, leaf_hash=merkle.leaf_hash(leaves[index]), root=new.root)
    body = auditor.get(f"/v1/audit/proofs/consistency?old={old.size}&new={new.size}").get_json()
    proof = ConsistencyProof(old=old.size, new=new.size, hashes=tuple(b64d(h) for h in body["hashes"]))
    verify_consistency(proof, old_root=old.root, new_root=new.root)
    for route, field in [("inclusion?index=3&size=1000000", "size"), ("inclusion?index=5&size=5", "index"),
                         ("consistency?old=3&new=1000000", "new"), ("consistency?old=9&new=5", "old")]:
        body = assert_error(auditor.get(f"/v1/audit/proofs/{route}"), 422, "validation_failed")
        assert field in body["errors"], route
    assert_error(auditor.get("/v1/audit/proofs/inclusion?index=-1&size=5"), 422, "validation_failed")


def test_search_filters_and_pages(app: Flask, auditor: AgencyClient, interior: AgencyClient,
                                  border: AgencyClient) -> None:
    created = interior.post("/v1/returnees", json=returnee_body()).get_json()
    border.get(f"/v1/returnees/{created['id']}")
    border.get("/v1/returnees/6f1c1f38-5d4e-4c36-9b59-8a4ef1f7b7a1")
    interior.delete("/v1/returnees")

    def search(query: str) -> list[dict[str, Any]]:
        response = auditor.get(f"/v1/audit/search?{query}")
        assert response.status_code == 200, response.get_json()
        return [json.loads(b64d(item["leaf"])) for item in response.get_json()["items"]]

    assert [e["index"] for e in search("agency=border")] == [1, 2]
    assert [e["index"] for e in search(f"record_id={created['id']}")] == [0, 1]
    assert [e["index"] for e in search("outcome=failure")] == [2, 3]
    assert [e["index"] for e in search("action=disclose&agency=border")] == [1]
    # the DELETE is refused (405) before authentication: its entry names no client
    assert [e["index"] for e in search("client_id=test-border&outcome=failure")] == [2]
    assert [e["action"] for e in search("purpose=oversight")] == ["audit.read"] * 5
    times = [e["time"] for e in stored_entries(app)]
    assert [e["index"] for e in search(f"from={times[1]}&to={times[3]}".replace("+", "%2B"))] == [1, 2]
    page = auditor.get("/v1/audit/search?limit=2").get_json()
    assert [i["index"] for i in page["items"]] == [0, 1] and page["next_after"] == 1
    page = auditor.get(f"/v1/audit/search?limit=2&after={page['next_after']}").get_json()
    assert [i["index"] for i in page["items"]] == [2, 3]
    body = assert_error(auditor.get("/v1/audit/search?name=Halimov"), 422, "validation_failed")
    assert "name" in body["errors"]
    assert_error(auditor.get("/v1/audit/search?outcome=maybe"), 422, "validation_failed")
    assert_error(auditor.get("/v1/audit/search?from=yesterday"), 422, "validation_failed")


def test_export_streams_json_lines_with_the_checkpoint_that_covers_them(app: Flask, auditor: AgencyClient) -> None:
    fill(app, 12)
    with auditor.get("/v1/audit/export") as response:
        assert response.status_code == 200 and response.mimetype == "application/jsonl"
        assert response.headers["Audit-Index"] == "12"
        header, *lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert header["format"] == EXPORT_FORMAT and (header["start"], header["end"]) == (0, 12)
    checkpoint = verify_checkpoint(header["checkpoint"], recorder.verifiers(app), origin=recorder.origin(app))
    assert checkpoint.size == 12
    leaves = [b64d(line["leaf"]) for line in lines]
    assert [line["index"] for line in lines] == list(range(12)) and leaves == stored_leaves(app)[:12]
    assert merkle.root_of(merkle.leaf_hash(leaf) for leaf in leaves) == checkpoint.root
    with auditor.get("/v1/audit/export?start=3&end=5") as response:
        partial = response.get_data(as_text=True).splitlines()
    assert [json.loads(line)["index"] for line in partial[1:]] == [3, 4]
    assert_error(auditor.get("/v1/audit/export?end=100"), 422, "validation_failed")
    assert_error(auditor.get("/v1/audit/export?start=4&end=2"), 422, "validation_failed")
    assert stored_entries(app)[-1]["reason"] == "validation_failed"
