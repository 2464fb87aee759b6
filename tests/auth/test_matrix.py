"""Every API route x every agency x allowed/denied scope and purpose, through the released authenticator.

A route added without `@protected(scopes=...)` fails `test_every_api_route_declares_its_scopes`; one whose guard
lets a wrong scope or purpose through fails the matrix.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from exchange.protocol.policy import AGENCY_SCOPES, ALL_SCOPES, PURPOSES
from tests.auth.conftest import ISSUER, Partner
from tests.conftest import route_scopes
from tests.register.test_need_to_know import NO_SCOPE, PAGING, REFUSED, SAMPLES

AGENCIES = sorted(AGENCY_SCOPES)


@pytest.fixture
def oauth_app(make_app: Callable[..., Flask]) -> Flask:
    """The released authenticator, without rate limits: the matrix sends a few hundred calls a second from one
    source, and what it checks is the guard, not the limiter (tests/test_limits.py covers that)."""
    return make_app(AUTHENTICATOR=None, ISSUER=ISSUER, RATE_LIMITS_ENABLED=False)

READ = {"returnees:read", "returnees:screen"}
WRITE = {"returnees:write"}
# The expected scopes of every API route, written down independently of the code (domain.md "Scopes"). A new route
# fails the tests until it is added here, with its protection.
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("GET", "/v1/returnees"): READ,
    ("POST", "/v1/returnees"): WRITE,
    ("GET", "/v1/returnees/<uuid:returnee_id>"): READ,
    ("PATCH", "/v1/returnees/<uuid:returnee_id>"): WRITE,
    ("POST", "/v1/returnees/<uuid:returnee_id>/transitions"): {"returnees:write", "crossings:write", "decisions:write"},
    ("POST", "/v1/screening"): {"returnees:screen"},
    ("POST", "/v1/screening/manifests"): {"returnees:screen"},
    ("GET", "/v1/events"): {"events:read"},
    ("GET", "/v1/hotline-contacts"): {"returnees:read"},
    ("POST", "/v1/hotline-contacts"): WRITE,
    ("GET", "/v1/hotline-contacts/<uuid:record_id>"): {"returnees:read"},
    ("PATCH", "/v1/hotline-contacts/<uuid:record_id>"): WRITE,
    ("GET", "/v1/border-instructions"): READ,
    ("POST", "/v1/border-instructions"): WRITE,
    ("GET", "/v1/border-instructions/<uuid:record_id>"): READ,
    ("PATCH", "/v1/border-instructions/<uuid:record_id>"): WRITE,
    ("GET", "/v1/border-crossings"): READ,
    ("POST", "/v1/border-crossings"): {"crossings:write"},
    ("GET", "/v1/border-crossings/<uuid:record_id>"): READ,
    ("PATCH", "/v1/border-crossings/<uuid:record_id>"): {"crossings:write", "returnees:write"},
    ("GET", "/v1/vetting-assessments"): {"returnees:read"},
    ("POST", "/v1/vetting-assessments"): WRITE,
    ("GET", "/v1/vetting-assessments/<uuid:record_id>"): {"returnees:read"},
    ("PATCH", "/v1/vetting-assessments/<uuid:record_id>"): WRITE,
    ("GET", "/v1/prosecutorial-decisions"): {"returnees:read"},
    ("POST", "/v1/prosecutorial-decisions"): {"decisions:write"},
    ("GET", "/v1/prosecutorial-decisions/<uuid:record_id>"): {"returnees:read"},
    ("PATCH", "/v1/prosecutorial-decisions/<uuid:record_id>"): {"decisions:write"},
    ("GET", "/v1/clients"): {"clients:admin"},
    ("POST", "/v1/clients"): {"clients:admin"},
    ("GET", "/v1/clients/<string:client_id>"): {"clients:admin"},
    ("PATCH", "/v1/clients/<string:client_id>"): {"clients:admin"},
    ("POST", "/v1/clients/<string:client_id>/keys"): {"clients:admin"},
    ("POST", "/v1/clients/<string:client_id>/keys/<string:kid>/revocation"): {"clients:admin"},
    ("GET", "/v1/clients/<string:client_id>/webhooks"): {"clients:admin"},
    ("POST", "/v1/clients/<string:client_id>/webhooks"): {"clients:admin"},
    ("GET", "/v1/clients/<string:client_id>/webhooks/<uuid:webhook_id>"): {"clients:admin"},
    ("DELETE", "/v1/clients/<string:client_id>/webhooks/<uuid:webhook_id>"): {"clients:admin"},
    ("GET", "/v1/clients/<string:client_id>/webhooks/<uuid:webhook_id>/deliveries"): {"clients:admin"},
    ("POST", "/v1/clients/me/keys"): set(ALL_SCOPES),  # any agency client, for its own keys
    ("GET", "/v1/keys"): {"keys:admin"},
    ("POST", "/v1/keys"): {"keys:admin"},
    ("GET", "/v1/keys/<string:kid>"): {"keys:admin"},
    ("POST", "/v1/keys/<string:kid>/activation"): {"keys:admin"},
    ("POST", "/v1/keys/<string:kid>/retirement"): {"keys:admin"},
    ("POST", "/v1/keys/<string:kid>/revocation"): {"keys:admin"},
    ("POST", "/v1/keys/<string:kid>/destruction"): {"keys:admin"},
    ("POST", "/v1/keys/rotation"): {"keys:admin"},
    ("POST", "/v1/keys/rewrap"): {"keys:admin"},
    ("GET", "/v1/keys/approvals"): {"keys:admin"},
    ("POST", "/v1/keys/approvals/<uuid:approval_id>"): {"keys:admin"},
    ("GET", "/v1/audit/checkpoint"): {"audit:read"},
    ("GET", "/v1/audit/entries"): {"audit:read"},
    ("GET", "/v1/audit/proofs/inclusion"): {"audit:read"},
    ("GET", "/v1/audit/proofs/consistency"): {"audit:read"},
    ("GET", "/v1/audit/search"): {"audit:read"},
    ("GET", "/v1/audit/export"): {"audit:read"},
    ("GET", "/v1/audit/receipts/<int:index>"): set(ALL_SCOPES),  # any agency client, for its own entries
}
GUARD_CODES = {"invalid_token", "invalid_dpop_proof", "dpop_replay", "insufficient_scope", "purpose_not_allowed"}


def api_routes(app: Flask) -> Iterator[tuple[str, str, str]]:
    """(method, rule, concrete path) for every /v1 route, with placeholders filled in."""
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith("/v1/"):
            continue
        path = rule.rule
        for name, converter in rule._converters.items():
            value = {"UUIDConverter": str(uuid.uuid4()), "IntegerConverter": "7"}.get(type(converter).__name__,
                                                                                     "nothing-here")
            path = re.sub(rf"<(?:\w+:)?{name}>", value, path)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield method, rule.rule, path


def test_every_api_route_declares_the_expected_scopes(oauth_app: Flask) -> None:
    unprotected, unexpected, wrong = [], [], []
    for method, rule, path in api_routes(oauth_app):
        if (method, rule) not in EXPECTED:
            unexpected.append(f"{method} {rule}")
            continue
        try:
            declared = route_scopes(oauth_app, method, path)
        except AttributeError:
            unprotected.append(f"{method} {rule}")
            continue
        if declared != EXPECTED[(method, rule)]:
            wrong.append(f"{method} {rule}: {sorted(declared)}")
    assert unprotected == [], f"routes without @protected: {unprotected}"
    assert unexpected == [], f"routes missing from this test's EXPECTED table: {unexpected}"
    assert wrong == [], f"routes whose scopes differ from EXPECTED: {wrong}"
    assert {(m, r) for m, r, _ in api_routes(oauth_app)} == set(EXPECTED)


def test_no_token_no_call(oauth_app: Flask) -> None:
    client = oauth_app.test_client()
    for method, _, path in api_routes(oauth_app):
        response = client.open(path, method=method, json={})
        assert (response.status_code, response.get_json()["code"]) == (401, "invalid_token"), (method, path)


@pytest.mark.parametrize("agency", AGENCIES)
def test_route_matrix(oauth_app: Flask, partner: Callable[..., Partner], agency: str) -> None:
    caller = partner(agency)
    full_token = caller.get_token()
    foreign_purpose = next(p for a, ps in sorted(PURPOSES.items()) if a != agency for p in sorted(ps))
    cells = 0
    for method, rule, path in api_routes(oauth_app):
        required = EXPECTED[(method, rule)]
        allowed = AGENCY_SCOPES[agency] & required
        caller.token = full_token
        response = caller.call(method, path, json={})
        body = response.get_json() or {}
        if not allowed:
            # denied scope: the agency can never hold a scope this route accepts
            assert (response.status_code, body.get("code")) == (403, "insufficient_scope"), (method, path, body)
            cells += 1
            continue
        # allowed scope and purpose: the guard lets the call through to need to know, validation or the service
        assert response.status_code != 401 and body.get("code") not in GUARD_CODES, (method, path, body)
        for purpose in (None, foreign_purpose, "curiosity"):
            response = caller.call(method, path, json={}, purpose=purpose)
            assert (response.status_code, response.get_json()["code"]) == (403, "purpose_not_allowed"), (
                method, path, purpose)
        # the same client, with a token that leaves out every scope this route accepts
        remaining = AGENCY_SCOPES[agency] - required
        if remaining:
            caller.token = caller.get_token(scope=remaining)
            response = caller.call(method, path, json={})
            assert (response.status_code, response.get_json()["code"]) == (403, "insufficient_scope"), (method, path)
            caller.token = full_token
        cells += 5
    assert cells > 0


@pytest.mark.parametrize("agency", ["interior", "border", "prosecutor"])
def test_list_parameter_matrix(oauth_app: Flask, partner: Callable[..., Partner], agency: str) -> None:
    """Every list route x every query parameter, through the released authenticator: a parameter that reads a field
    outside the agency's view is 422 `validation_failed` naming it; the others answer a page. (The register's own
    matrix, tests/register/test_need_to_know.py, checks what the pages then contain.)"""
    caller = partner(agency)
    cells = 0
    for route, samples in sorted(SAMPLES.items()):
        for param, value in {**samples, **PAGING}.items():
            if (route, param) == ("/v1/returnees", "status") and agency == "border":
                value = "other"  # the border's own terms
            response = caller.call("GET", f"{route}?{param}={value}")
            body = response.get_json()
            if (route, agency) in NO_SCOPE:
                expected: tuple[int, str | None] = (403, "insufficient_scope")
            elif agency in REFUSED.get((route, param), set()):
                expected = (422, "validation_failed")
                assert set(body["errors"]) == {param}, (route, param)
            else:
                expected = (200, None)
            assert (response.status_code, body.get("code")) == expected, (route, param, body)
            cells += 1
    assert cells == sum(len(s) + len(PAGING) for s in SAMPLES.values())
