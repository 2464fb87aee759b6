"""Rules every request meets before any view runs, whatever the route (the input rules of the README).

- An undeclared method (TRACE, or any the route does not serve) is 405 `method_not_allowed`, before authentication:
  a method the exchange does not serve needs no credentials to be refused.
- A query parameter is accepted only where the route declares it: each operation declares its query schema with
  `@blp.arguments(..., location="query")`; an operation without one takes no query parameters at all (this holds
  for `/oauth/token`, `/healthz` and the documents too). Anything else is 422 `validation_failed` naming it. The
  declared names are read once per operation from flask-smorest's documentation of the view, so the OpenAPI
  document and this rule cannot disagree.
- A query value and a path segment are text that may hold no NUL or unpaired surrogate, and a path integer must
  fit a signed 64-bit column (`exchange.protocol.text`): 422 `validation_failed` as well.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from marshmallow import Schema
from werkzeug.exceptions import MethodNotAllowed

from exchange.protocol.errors import ValidationFailed
from exchange.protocol.text import integer_fault, text_fault

UNKNOWN_PARAMETER = "Unknown query parameter: this operation does not take it."


def refuse_undeclared_method() -> None:
    """Routing found the path but not the method: 405 now, with `Allow`, before anyone asks for credentials."""
    if isinstance(request.routing_exception, MethodNotAllowed):
        raise request.routing_exception


def _query_names(schema: Any) -> set[str]:
    instance: Schema = schema() if isinstance(schema, type) else schema
    return {field.data_key or name for name, field in instance.fields.items() if not field.dump_only}


def declared_query(app: Flask, endpoint: str | None, method: str) -> frozenset[str]:
    """The query parameter names the operation (`endpoint`, `method`) declares; empty when it declares none."""
    cache: dict[tuple[str | None, str], frozenset[str]] = app.extensions.setdefault("exchange.declared_query", {})
    key = (endpoint, method)
    if key not in cache:
        view = app.view_functions.get(endpoint) if endpoint else None
        handler = view
        view_class = getattr(view, "view_class", None)
        if view_class is not None:
            name = method.lower()
            handler = getattr(view_class, name, None)
            if handler is None and name == "head":
                handler = getattr(view_class, "get", None)
        names: set[str] = set()
        parameters = getattr(handler, "_apidoc", {}).get("arguments", {}).get("parameters", [])
        for parameter in parameters:
            if parameter.get("in") in ("query", "querystring"):
                names |= _query_names(parameter["schema"])
        cache[key] = frozenset(names)
    return cache[key]


def check_query_and_path(app: Flask) -> None:
    """Refuse undeclared query parameters, unstorable text in the query or path, and path integers past 64 bits."""
    errors: dict[str, list[str]] = {}
    declared = declared_query(app, request.endpoint, request.method)
    for name, value in request.args.items(multi=True):
        if text_fault(name):
            errors.setdefault("_query", []).append(text_fault(name) or "")
            continue
        if name not in declared:
            errors.setdefault(name, []).append(UNKNOWN_PARAMETER)
        elif text_fault(value):
            errors.setdefault(name, []).append(text_fault(value) or "")
    for name, value in (request.view_args or {}).items():
        fault = text_fault(value) if isinstance(value, str) else (
            integer_fault(value) if isinstance(value, int) else None)
        if fault:
            errors.setdefault(name, []).append(fault)
    if errors:
        raise ValidationFailed(errors={name: sorted(set(found)) for name, found in errors.items()})
