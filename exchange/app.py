"""The app factory: `create_app(config=None)` wires the extensions, blueprints and request hooks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from flask import Flask, Response, got_request_exception, request, request_finished
from flask.typing import ResponseReturnValue
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from exchange.audit.recorder import late_failure, record_call, require_audit_key, sequence_call
from exchange.audit.witnessing import install_checkpointer
from exchange.auth.setup import init_auth
from exchange.config import from_environment
from exchange.db import db
from exchange.envelope.http import (
    envelopes_required,
    install_envelope_outcomes,
    install_envelopes,
    outcome_step,
    require_response_key,
    seal_step,
)
from exchange.keys.master import MasterSecret, unlock
from exchange.keys.ring import KeyRing, attach_key_ring
from exchange.keys.store import FileKeyStore, KeyStore
from exchange.limits import check_client_limit, install_rate_limits
from exchange.logs import configure_logging, install_request_ids
from exchange.openapi import complete_document
from exchange.outages import outage_error
from exchange.protocol.errors import MalformedJson, UnsupportedMediaType
from exchange.register.name_index import warm_up
from exchange.request_rules import check_query_and_path, refuse_undeclared_method
from exchange.web import docs
from exchange.web.caller import authenticate
from exchange.web.errors import (
    ErrorSchema,
    log_finalizing_failure,
    register_error_handlers,
    unexpected_error_response,
)
from exchange.web.pipeline import ResponseSteps, install_response_pipeline

API_DESCRIPTION = """\
The returnee register shared by the Ministry of Internal Affairs (interior), the border service (border) and the
prosecutor's office (prosecutor).

Every `/v1/` request body and every 2xx body is an envelope (`application/vnd.exchange.envelope.v1+json`: signed by
the sender, sealed to the recipient); the JSON inside is named by the media type's `x-plaintext-schema`. Calls carry a
DPoP-bound access token (`Authorization: DPoP <token>`, from `/oauth/token` with private_key_jwt) and a DPoP proof
whose `purpose` claim is one of the operation's `x-purposes`. A register response is the caller's agency view (need to
know): the `oneOf` alternatives are told apart by the `view` member (the discriminator), the caller's agency. Errors
are plain JSON `{code, status, message, errors?, request_id}`; each operation lists its codes per status. Writes to
an existing record need `If-Match` with the record's ETag; a stale one gets 412, a missing one 428.
"""


class ExchangeFlask(Flask):
    """Flask with a typed, quiet last resort. An exception that escapes the error handlers (raised by an after-request
    hook or a `request_finished` receiver) is answered through `exchange.web.errors` like any other: a dependency
    outage is a 503 with its code even under TESTING, anything else a 500 `internal_error`; each is logged as one
    structured line, never with a traceback (Flask's default logs one per failure, and then one more for each hook
    that fails again while the error response is finalized)."""

    def handle_exception(self, e: Exception) -> Response:
        if outage_error(e) is None:
            return super().handle_exception(e)
        got_request_exception.send(self, _async_wrapper=self.ensure_sync, exception=e)
        return self.finalize_request(unexpected_error_response(e), from_error_handler=True)

    def log_exception(
        self, exc_info: tuple[type, BaseException, TracebackType] | tuple[None, None, None]
    ) -> None:
        """Nothing: the handler of the resulting `InternalServerError` logs one line (`unexpected_error_response`)."""

    def finalize_request(self, rv: ResponseReturnValue | HTTPException, from_error_handler: bool = False) -> Response:
        if not from_error_handler:
            return super().finalize_request(rv)
        response = self.make_response(rv)
        try:
            response = self.process_response(response)
            request_finished.send(self, _async_wrapper=self.ensure_sync, response=response)
        except Exception as e:  # the error response stands; what failed while finishing it is logged, once
            log_finalizing_failure(e)
        return response


class ExchangeApi(Api):
    """flask-smorest's Api, documenting our error body instead of its own."""

    ERROR_SCHEMA = ErrorSchema


def require_json_body() -> None:
    """Writes carry a JSON object; anything else is refused before a schema sees it."""
    if not request.is_json:
        raise UnsupportedMediaType()
    if request.get_json(silent=True) is None:
        raise MalformedJson()


def install_key_ring(app: Flask) -> None:
    """The key ring over the registry and the store. Outside tests the store is the embedded `FileKeyStore`, unlocked
    now: a server refuses to start when the master secret is missing or wrong (operations.md). The CLI passes
    `LAZY_KEY_STORE` so that commands that need no private key (`exchange audit verify`, `clients list`) run
    without it; those that do unlock on first use."""
    store: KeyStore | None = app.config.get("KEYSTORE")
    if store is None:
        directory = Path(app.config["KEYS_DIR"])
        secret = MasterSecret.from_environment()
        store = FileKeyStore(directory, master=lambda: unlock(directory, secret))
        if not app.config.get("LAZY_KEY_STORE"):
            store.unlock()
    attach_key_ring(app, KeyRing(engine=db.engine(app), store=store, cache_seconds=app.config["KEY_CACHE_SECONDS"]))


def serve_app() -> Flask:
    """The app as a server's worker runs it (`wsgi:app`, `exchange serve`): `create_app()`, and the worker's
    screening name index loaded in the background from the start rather than by the worker's first screening."""
    app = create_app()
    warm_up(app.extensions["exchange.db"])
    return app


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the exchange. `config` overrides what the environment says (tests pass one; production does not)."""
    app = ExchangeFlask(__name__)
    app.config.update(from_environment(instance_path=app.instance_path))
    app.config.update(
        API_TITLE="Returnee Exchange",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=docs.SWAGGER_UI_URL,  # served from the package: /docs works on a closed network
        OPENAPI_SWAGGER_UI_CONFIG=docs.SWAGGER_UI_CONFIG,
        API_SPEC_OPTIONS={"info": {"description": API_DESCRIPTION}},
        JSON_SORT_KEYS=False,
    )
    app.config.update(config or {})
    app.json.sort_keys = False  # type: ignore[attr-defined]

    configure_logging(app)
    install_request_ids(app)
    # the whole response path, in the order exchange.web.pipeline decides; its one after-request hook is registered
    # first, so it sees the response last (after flask-limiter's headers)
    install_response_pipeline(app, ResponseSteps(record_outcome=outcome_step, record_call=record_call,
                                                 sequence=sequence_call, seal=seal_step, late_failure=late_failure))
    install_rate_limits(app)  # the per-source limit comes before anything a request costs
    db.init_app(app)
    install_envelopes(app)
    install_envelope_outcomes(app)
    install_key_ring(app)
    install_checkpointer(app)  # witness.md §1: checkpoints by the service, submitted to the witnesses
    init_auth(app)

    @app.before_request
    def _authenticate_api_calls() -> None:
        refuse_undeclared_method()
        if request.path.startswith("/v1/"):
            require_audit_key(app)
            caller = authenticate(request)
            check_client_limit(caller.client_id)  # before the envelope is opened and the view runs
        if request.routing_exception is None:
            check_query_and_path(app)
        if request.path.startswith("/v1/"):
            if envelopes_required(app):
                require_response_key()  # request bodies are opened when a view parses them (EnvelopeParser)
            elif request.method in ("POST", "PUT", "PATCH"):
                require_json_body()

    from exchange import health
    from exchange.audit import views as audit_views
    from exchange.clients import views as client_views
    from exchange.events import views as event_views
    from exchange.keys import views as key_views
    from exchange.register import views as register_views

    # One Api per app: flask-smorest keeps the OpenAPI spec on the Api object, and tests build many apps.
    api = ExchangeApi(app)
    app.extensions["exchange.api"] = api
    for view in register_views.documented_views():
        name = view.__name__.removesuffix("Schema")
        if name not in api.spec.components.schemas:
            api.spec.components.schema(name, schema=view)
    for name, component in register_views.agency_view_components(api.spec.components.schemas).items():
        if name not in api.spec.components.schemas:
            api.spec.components.schema(name, component=component)
    api.register_blueprint(register_views.blp)
    api.register_blueprint(audit_views.blp)
    api.register_blueprint(client_views.blp)
    api.register_blueprint(key_views.blp)
    api.register_blueprint(event_views.blp)
    complete_document(app, api.spec)  # the wire as it is: envelopes, security, errors, the OAuth endpoints
    app.register_blueprint(health.bp)
    app.register_blueprint(docs.bp)
    register_error_handlers(app)  # after Api(app), which installs its own HTTPException handler: ours wins
    return app
