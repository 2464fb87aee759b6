"""The OpenAPI document tells the truth: it passes a strict validator, names the envelope and the plaintext inside it,
the security of each operation, its errors (derived from the error classes), conditional writes, the OAuth and
discovery endpoints; and every real response of the register matches exactly one of the agencies' views."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import OpenAPIV30SpecValidator

from exchange.openapi import AUTHENTICATION, ENVELOPE, GUARD
from exchange.protocol.envelope import MEDIA_TYPE
from exchange.protocol.policy import PURPOSES
from exchange.web.openapi import declared_errors, if_match_declared
from tests.conftest import AgencyClient
from tests.register.test_records import (
    crossing_body,
    decision_body,
    hotline_body,
    instruction_body,
    returnee_in,  # noqa: F401  (a fixture, used by name)
)

Spec = dict[str, Any]


@pytest.fixture
def spec(app: Flask) -> Spec:
    document: Spec = app.test_client().get("/openapi.json").get_json()
    return document


def operations(spec: Spec, prefix: str = "/v1/") -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in spec["paths"].items() if path.startswith(prefix)
            for method, op in ops.items() if method != "parameters"]


def resolve(spec: Spec, value: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in value:
        _, section, kind, name = value["$ref"].split("/")
        value = spec[section][kind][name]
    return value


def codes_of(spec: Spec, op: dict[str, Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for status, response in op["responses"].items():
        response = resolve(spec, response)
        schema = response.get("content", {}).get("application/json", {}).get("schema", {})
        for part in schema.get("allOf", ()):
            enum = part.get("properties", {}).get("code", {}).get("enum")
            if enum:
                found[status] = set(enum)
    return found


def handler_of(app: Flask, path: str, method: str) -> Any:
    rule = re.sub(r"\{(\w+)\}", r"<\1>", path)
    for candidate in app.url_map.iter_rules():
        if re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", candidate.rule) == rule:
            return getattr(app.view_functions[candidate.endpoint].view_class, method)  # type: ignore[attr-defined]
    raise AssertionError(f"no route for {path}")


def test_a_strict_validator_accepts_the_document(spec: Spec) -> None:
    errors = [str(e.message) for e in OpenAPIV30SpecValidator(spec).iter_errors()]
    assert errors == []


def test_every_body_and_data_response_is_an_envelope_naming_its_plaintext(spec: Spec) -> None:
    bodies = data = 0
    for path, method, op in operations(spec):
        if "requestBody" in op:
            content = op["requestBody"]["content"]
            assert list(content) == [MEDIA_TYPE], (method, path)
            assert content[MEDIA_TYPE]["schema"] == {"$ref": "#/components/schemas/Envelope"}
            assert content[MEDIA_TYPE]["x-plaintext-schema"], (method, path)
            bodies += 1
        for status, response in op["responses"].items():
            if status.startswith("2") and "content" in resolve(spec, response):
                content = response["content"]
                assert "application/json" not in content, (method, path, status)
                if MEDIA_TYPE in content:
                    assert content[MEDIA_TYPE]["x-plaintext-schema"], (method, path, status)
                    data += 1
    assert bodies >= 20 and data >= 40


def test_every_operation_names_its_scopes_and_purposes(app: Flask, spec: Spec) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["oauth2"]["flows"]["clientCredentials"]["tokenUrl"] == "/oauth/token"
    assert schemes["DPoP"] == {**schemes["DPoP"], "type": "apiKey", "in": "header", "name": "DPoP"}
    for path, method, op in operations(spec):
        scopes = sorted(handler_of(app, path, method).exchange_scopes)
        assert op["security"] == [{"oauth2": [scope], "DPoP": []} for scope in scopes], (method, path)
        assert op["x-purposes"] and set(op["x-purposes"]) <= set().union(*PURPOSES.values())
    screening = spec["paths"]["/v1/screening"]["post"]
    assert screening["x-purposes"] == ["border-screening"]


def test_error_codes_per_operation_come_from_the_error_classes(app: Flask, spec: Spec) -> None:
    for path, method, op in operations(spec):
        codes = codes_of(spec, op)
        handler = handler_of(app, path, method)
        expected = [*AUTHENTICATION, *GUARD, *declared_errors(handler)]
        if "requestBody" in op:
            expected += ENVELOPE
        for error in expected:
            assert error.code in codes.get(str(error.status), set()), (method, path, error.__name__)
        if "requestBody" not in op:
            assert "envelope_malformed" not in codes.get("400", set()), (method, path)
    for status in ("429", "503"):
        for name, response in spec["components"]["responses"].items():
            if name.startswith(f"Error{status}-"):
                assert "Retry-After" in response["headers"]


def test_conditional_writes(app: Flask, spec: Spec) -> None:
    patch = spec["paths"]["/v1/returnees/{returnee_id}"]["patch"]
    assert {"in": "header", "name": "If-Match", "required": True} .items() <= next(
        p for p in patch["parameters"] if p["name"] == "If-Match").items()
    codes = codes_of(spec, patch)
    assert "precondition_failed" in codes["412"] and "precondition_required" in codes["428"]
    transition = spec["paths"]["/v1/returnees/{returnee_id}/transitions"]["post"]
    assert next(p for p in transition["parameters"] if p["name"] == "If-Match")["required"] is False
    assert "428" not in codes_of(spec, transition)
    read = spec["paths"]["/v1/returnees/{returnee_id}"]["get"]
    assert "ETag" in read["responses"]["200"]["headers"]
    assert "412" not in codes_of(spec, read) and "If-Match" not in str(read.get("parameters"))
    for path, method, op in operations(spec):  # the header is documented exactly where the view reads it
        reads = if_match_declared(handler_of(app, path, method))
        params = [p for p in op.get("parameters", ()) if p["name"] == "If-Match"]
        assert (reads is None) == (params == []), (method, path)


def test_discovery_and_oauth_endpoints_are_documented(spec: Spec) -> None:
    paths = spec["paths"]
    assert set(paths["/oauth/token"]["post"]["requestBody"]["content"]) == {"application/x-www-form-urlencoded"}
    assert resolve(spec, paths["/oauth/token"]["post"]["requestBody"]["content"][
        "application/x-www-form-urlencoded"]["schema"])["required"] == [
        "grant_type", "client_assertion_type", "client_assertion", "scope"]
    for path in ("/oauth/revoke", "/oauth/introspect", "/.well-known/jwks.json",
                 "/.well-known/oauth-authorization-server"):
        assert path in paths


def test_the_views_are_told_apart_by_a_discriminator(spec: Spec) -> None:
    """Each `oneOf` of agency views has a discriminator whose values are disjoint `enum`s of the alternatives, so
    that no body can match two alternatives (strict validators reject examples that do)."""
    seen = 0
    for _path, _method, op in operations(spec):
        for response in op["responses"].values():
            for media in resolve(spec, response).get("content", {}).values():
                schema = media.get("x-plaintext-schema", {})
                if "oneOf" not in schema:
                    continue
                seen += 1
                assert schema["discriminator"]["propertyName"] == "view"
                enums = [set(resolve(spec, alt)["properties"]["view"]["enum"]) for alt in schema["oneOf"]]
                assert sum(len(e) for e in enums) == len(set().union(*enums)) == len(schema["discriminator"]["mapping"])
    assert seen >= 10


def matching_alternatives(spec: Spec, schema: dict[str, Any], instance: Any) -> int:
    alternatives = schema.get("oneOf", [schema])
    return sum(OAS30Validator({**alt, "components": spec["components"]}).is_valid(instance) for alt in alternatives)


def test_every_real_response_matches_exactly_one_view(
    spec: Spec, as_agency: Callable[..., AgencyClient], returnee_in: Callable[[str], dict[str, Any]],  # noqa: F811
) -> None:
    """Real bodies of every register read, as each agency gets them, validate against exactly one alternative."""
    interior, border, prosecutor = as_agency("interior"), as_agency("border"), as_agency("prosecutor")
    returnee = returnee_in("under_review")
    rid = returnee["id"]
    writes = [
        ("/v1/hotline-contacts", interior.post("/v1/hotline-contacts", json=hotline_body(rid))),
        ("/v1/border-instructions", interior.post("/v1/border-instructions", json=instruction_body(rid))),
        ("/v1/prosecutorial-decisions", prosecutor.post("/v1/prosecutorial-decisions", json=decision_body(rid))),
        ("/v1/border-crossings", border.post("/v1/border-crossings", json=crossing_body(rid, direction="exit"))),
    ]
    checked: list[tuple[str, str, str]] = []
    for path, response in writes:
        assert response.status_code == 201, response.get_json()
        schema = spec["paths"][path]["post"]["responses"]["201"]["content"][MEDIA_TYPE]["x-plaintext-schema"]
        assert matching_alternatives(spec, schema, response.get_json()) == 1, explain(spec, schema, response.get_json())
    ids = {path: response.get_json()["id"] for path, response in writes}
    ids["/v1/returnees"] = rid
    ids["/v1/vetting-assessments"] = interior.get(f"/v1/vetting-assessments?returnee_id={rid}").get_json()[
        "items"][0]["id"]
    for agency, client in (("interior", interior), ("border", border), ("prosecutor", prosecutor)):
        for collection, record_id in ids.items():
            item = f"{collection}/{{returnee_id}}" if collection == "/v1/returnees" else f"{collection}/{{record_id}}"
            for template, url in ((collection, collection), (item, f"{collection}/{record_id}")):
                response = client.get(url)
                if response.status_code != 200:
                    assert response.status_code == 403, (agency, url, response.get_json())
                    continue
                body = response.get_json()
                assert body["view"] == agency
                schema = spec["paths"][template]["get"]["responses"]["200"]["content"][MEDIA_TYPE][
                    "x-plaintext-schema"]
                assert matching_alternatives(spec, schema, body) == 1, (agency, url, explain(spec, schema, body))
                checked.append((agency, template, url))
    assert {(a, t) for a, t, _ in checked} >= {(a, "/v1/returnees/{returnee_id}") for a in
                                               ("interior", "border", "prosecutor")}
    assert len(checked) >= 20


def explain(spec: Spec, schema: dict[str, Any], instance: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for alt in schema.get("oneOf", [schema])
            for e in OAS30Validator({**alt, "components": spec["components"]}).iter_errors(instance)]
