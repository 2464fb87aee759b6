"""`/v1/clients`: security officers administer agency clients through the API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from exchange.partner.credentials import PartnerKey
from tests.auth.conftest import Partner
from tests.auth.test_token import assert_api_error, assert_oauth_error

MakePartner = Callable[..., Partner]


def client_body(**overrides: Any) -> dict[str, Any]:
    body = {"client_id": "prosecutor-dushanbe", "agency": "prosecutor", "name": "Prosecutor's office, Dushanbe",
            "scopes": ["returnees:read", "decisions:write"],
            "keys": [{"purpose": "auth", "jwk": PartnerKey.generate().public_jwk}]}
    body.update(overrides)
    return body


def test_register_read_and_list(partner: MakePartner) -> None:
    security = partner("security")
    response = security.call("POST", "/v1/clients", json=client_body())
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["status"] == "active" and created["created_by"] == "TJ-TEST-001"
    assert [k["purpose"] for k in created["keys"]] == ["auth"] and "d" not in created["keys"][0]
    assert response.headers["Location"].endswith("/v1/clients/prosecutor-dushanbe")
    assert security.call("GET", "/v1/clients/prosecutor-dushanbe").get_json()["scopes"] == created["scopes"]
    listed = security.call("GET", "/v1/clients?agency=prosecutor").get_json()
    assert [c["client_id"] for c in listed["items"]] == ["prosecutor-dushanbe"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"scopes": ["returnees:write"]}, "scopes"),  # not a prosecutor's scope
        ({"scopes": ["everything"]}, "scopes"),
        ({"agency": "exchange"}, "agency"),
        ({"client_id": "Bad Id!"}, "client_id"),
        ({"keys": [{"purpose": "sign", "jwk": PartnerKey.generate().public_jwk}]}, "keys"),  # no auth key
        ({"keys": [{"purpose": "enc", "jwk": PartnerKey.generate().public_jwk}]}, "keys"),  # Ed25519 as enc
        ({"keys": [{"purpose": "auth", "jwk": {**PartnerKey.generate().public_jwk, "d": "x" * 43}}]}, "keys"),
        ({"keys": [{"purpose": "auth", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": "short"}}]}, "keys"),
    ],
)
def test_bad_registrations_are_422_and_store_nothing(
    partner: MakePartner, overrides: dict[str, Any], field: str
) -> None:
    security = partner("security")
    response = security.call("POST", "/v1/clients", json=client_body(**overrides))
    assert_api_error(response, 422, "validation_failed")
    assert field in response.get_json()["errors"]
    assert security.call("GET", "/v1/clients?agency=prosecutor").get_json()["total"] == 0


def test_duplicate_client_is_409(partner: MakePartner) -> None:
    security = partner("security")
    assert security.call("POST", "/v1/clients", json=client_body()).status_code == 201
    assert_api_error(security.call("POST", "/v1/clients", json=client_body()), 409, "duplicate_client")


def test_suspend_needs_a_reason_and_if_match(partner: MakePartner) -> None:
    security, border = partner("security"), partner("border")
    path = f"/v1/clients/{border.client_id}"
    etag = security.call("GET", path).headers["ETag"]
    assert_api_error(security.call("PATCH", path, json={"status": "suspended"}, headers={"If-Match": etag}), 422,
                     "validation_failed")
    assert_api_error(security.call("PATCH", path, json={"status": "suspended", "status_reason": "x"}), 428,
                     "precondition_required")
    assert_api_error(security.call("PATCH", path, json={"status": "suspended", "status_reason": "x"},
                                   headers={"If-Match": '"99"'}), 412, "precondition_failed")
    assert security.call("GET", path).get_json()["status"] == "active"
    done = security.call("PATCH", path, json={"status": "suspended", "status_reason": "x"}, headers={"If-Match": etag})
    assert done.status_code == 200 and done.get_json()["status"] == "suspended"
    resumed = security.call("PATCH", path, json={"status": "active"}, headers={"If-Match": done.headers["ETag"]})
    assert resumed.get_json()["status"] == "active" and resumed.get_json()["status_reason"] is None


def test_a_change_that_changes_nothing_makes_no_new_version(partner: MakePartner) -> None:
    security, border = partner("security"), partner("border")
    path = f"/v1/clients/{border.client_id}"
    before = security.call("GET", path)
    current = before.get_json()
    empty = security.call("PATCH", path, json={}, headers={"If-Match": before.headers["ETag"]})
    assert_api_error(empty, 422, "validation_failed")
    for body in ({"name": current["name"]}, {"name": current["name"], "scopes": current["scopes"]}):
        response = security.call("PATCH", path, json=body, headers={"If-Match": before.headers["ETag"]})
        assert response.status_code == 200, response.get_json()
        assert response.headers["ETag"] == before.headers["ETag"]
        assert response.get_json()["updated_at"] == current["updated_at"]
    changed = security.call("PATCH", path, json={"name": "Border, renamed"},
                            headers={"If-Match": before.headers["ETag"]})
    assert changed.status_code == 200 and changed.headers["ETag"] != before.headers["ETag"]


@pytest.mark.parametrize("bad", ["nul\u0000", "\ud800", "ok\udc00ok"])
def test_unstorable_text_in_client_administration_is_422(partner: MakePartner, bad: str) -> None:
    security, border = partner("security"), partner("border")
    response = security.call("POST", "/v1/clients", json=client_body(name=bad))
    assert_api_error(response, 422, "validation_failed")
    assert "name" in response.get_json()["errors"]
    assert security.call("GET", "/v1/clients?agency=prosecutor").get_json()["total"] == 0
    path = f"/v1/clients/{border.client_id}"
    etag = security.call("GET", path).headers["ETag"]
    response = security.call("PATCH", path, json={"status": "suspended", "status_reason": bad},
                             headers={"If-Match": etag})
    assert_api_error(response, 422, "validation_failed")
    assert security.call("GET", path).get_json()["status"] == "active"


def test_revoked_auth_key_gets_no_more_tokens(partner: MakePartner) -> None:
    security, border = partner("security"), partner("border")
    spare = PartnerKey.generate()
    added = security.call("POST", f"/v1/clients/{border.client_id}/keys", json={"purpose": "auth",
                                                                              "jwk": spare.public_jwk})
    assert added.status_code == 201 and len(added.get_json()["keys"]) == 2
    assert_api_error(security.call("POST", f"/v1/clients/{border.client_id}/keys",
                                   json={"purpose": "auth", "jwk": spare.public_jwk}), 409, "duplicate_key")
    revoked = security.call("POST", f"/v1/clients/{border.client_id}/keys/{border.auth_key.kid}/revocation",
                            json={"reason": "key file copied to a USB stick"})
    assert revoked.status_code == 200
    assert_oauth_error(border.token_request(), 401, "invalid_client")
    border.auth_key = spare
    assert border.token_request().status_code == 200


def test_only_security_administers_clients(partner: MakePartner) -> None:
    for agency in ("interior", "border", "prosecutor", "auditor"):
        assert_api_error(partner(agency).call("POST", "/v1/clients", json=client_body()), 403, "insufficient_scope")
