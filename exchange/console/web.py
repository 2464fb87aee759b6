"""The console's local web app: a small Flask app serving the page, its assets and a JSON API over the index.

It answers only requests addressed to itself on 127.0.0.1 (the Host header is checked: a web page elsewhere cannot
reach it through DNS rebinding), and a write (a review note) must carry the page's own header (a cross-site form
cannot set it). Until the load is done every data call is 503 `console_loading`.
"""

from __future__ import annotations

import importlib.resources
import re
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, jsonify, request

from exchange.console.charts import all_charts
from exchange.console.errors import (
    ConsoleLoading,
    EntryNotFound,
    FlagNotFound,
    ForeignRequest,
    InvalidQuery,
    ReportUnavailable,
)
from exchange.console.loader import Loader
from exchange.console.report import ReportError, Subject, evidence, render
from exchange.console.store import MAX_PAGE, PAGE, SEARCHABLE, Index, Query, Reviews
from exchange.protocol.errors import ExchangeError

HEADER = "X-Console"
ASSETS = {"app.js": "text/javascript", "app.css": "text/css", "index.html": "text/html"}
_SAFE = re.compile(r"^[\w.:@/+-]{1,200}$")


def parse_time(text: str | None, name: str) -> int | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as e:
        raise InvalidQuery(f"{name} is not a date or time (ISO 8601, e.g. 2026-01-31 or 2026-01-31T08:00:00Z)") from e
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _int(text: str | None, name: str, default: int | None) -> int | None:
    if text in (None, ""):
        return default
    try:
        return int(text)
    except ValueError as e:
        raise InvalidQuery(f"{name} is a whole number") from e


def create_console(loader: Loader, reviews: Reviews, *, port: int) -> Flask:
    app = Flask(__name__, static_folder=None)
    index = Index(loader.settings.index_path)
    allowed_hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
    timezone = loader.settings.rules.timezone

    @app.errorhandler(ExchangeError)
    def typed(error: ExchangeError) -> tuple[Response, int]:
        return jsonify({"code": error.code, "message": error.message}), error.status

    @app.before_request
    def own_page_only() -> None:
        if request.host not in allowed_hosts:
            raise ForeignRequest()
        if request.method not in ("GET", "HEAD") and request.headers.get(HEADER) != "1":
            raise ForeignRequest("A write must come from the console's page.")

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' data:; "
                                                       "style-src 'self' 'unsafe-inline'; script-src 'self'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    def ready() -> dict[str, Any]:
        status = loader.status
        if status.phase not in ("done", "failed") or status.badge is None:
            raise ConsoleLoading()
        return status.badge

    def asset(name: str) -> Response:
        body = importlib.resources.files("exchange.console").joinpath("static", name).read_bytes()
        return Response(body, mimetype=ASSETS[name])

    @app.get("/")
    def page() -> Response:
        return asset("index.html")

    @app.get("/static/<name>")
    def static_asset(name: str) -> Response:
        if name not in ASSETS:
            raise EntryNotFound("No such asset.")
        return asset(name)

    @app.get("/api/status")
    def status() -> Response:
        return jsonify(loader.status.as_json() | {"rules": {
            "bulk_records": loader.settings.rules.bulk_records, "hours": loader.settings.rules.describe_hours(),
            "denial_burst": loader.settings.rules.denial_burst}})

    def query_from(args: dict[str, str], **fixed: str) -> Query:
        filters = {}
        for name in SEARCHABLE:
            value = (fixed.get(name) or args.get(name) or "").strip()
            if value:
                filters[name] = value
        record = (fixed.get("record_id") or args.get("record_id") or "").strip() or None
        return Query(filters=filters, record_id=record, time_from=parse_time(args.get("from"), "from"),
                     time_to=parse_time(args.get("to"), "to"), action_prefix=fixed.get("action_prefix"),
                     before=_int(args.get("before"), "before", None),
                     limit=min(_int(args.get("limit"), "limit", PAGE) or PAGE, MAX_PAGE))

    @app.get("/api/search")
    def search() -> Response:
        ready()
        if index_arg := request.args.get("index"):
            found = index.entries([_int(index_arg, "index", 0) or 0])
            return jsonify({"items": found, "next_before": None})
        return jsonify(index.search(query_from(request.args.to_dict())))

    @app.get("/api/entries/<int:number>")
    def entry(number: int) -> Response:
        ready()
        found = index.entries([number])
        if not found:
            raise EntryNotFound()
        leaves = index.leaves([number])
        return jsonify(found[0] | {"leaf": leaves[number][0].decode("utf-8")})

    @app.get("/api/history/<path:record_id>")
    def history(record_id: str) -> Response:
        ready()
        return jsonify(index.search(query_from(request.args.to_dict(), record_id=record_id)))

    @app.get("/api/clients/<client_id>")
    def client(client_id: str) -> Response:
        ready()
        return jsonify(index.search(query_from(request.args.to_dict(), client_id=client_id)))

    @app.get("/api/keys")
    def keys() -> Response:
        ready()
        return jsonify({"items": index.key_operations()})

    @app.get("/api/keys/<path:key_id>")
    def key(key_id: str) -> Response:
        ready()
        return jsonify(index.search(query_from(request.args.to_dict(), record_id=key_id)))

    @app.get("/api/charts")
    def charts() -> Response:
        ready()
        return jsonify(all_charts(index.aggregates(), timezone))

    def origin() -> str:
        return loader.status.origin or "-"

    @app.get("/api/flags")
    def flags() -> Response:
        ready()
        notes = reviews.all(origin())
        items, counts = index.flags(rule=request.args.get("rule") or None,
                                    limit=min(_int(request.args.get("limit"), "limit", 300) or 300, 5000))
        return jsonify({"items": [f | {"review": notes.get(f["key"])} for f in items], "counts": counts,
                        "reviewed": len(notes)})

    @app.get("/api/flags/<path:key>")
    def flag(key: str) -> Response:
        ready()
        found = index.flag(key)
        if found is None:
            raise FlagNotFound()
        row, indices = found
        return jsonify(row | {"review": reviews.all(origin()).get(key), "entries": index.entries(indices)})

    @app.post("/api/flags/<path:key>/review")
    def review(key: str) -> Response:
        ready()
        if index.flag(key) is None:
            raise FlagNotFound()
        body = request.get_json(silent=True)
        note = body.get("note") if isinstance(body, dict) else None
        if not isinstance(note, str) or len(note) > 4000:
            raise InvalidQuery("a review carries a note (text, at most 4000 characters; it may be empty)")
        return jsonify(reviews.mark(origin(), key, note))

    @app.delete("/api/flags/<path:key>/review")
    def unreview(key: str) -> Response:
        ready()
        reviews.clear(origin(), key)
        return jsonify({})

    @app.get("/report")
    def report() -> Response:
        badge = ready()
        if not badge.get("ok"):
            raise ReportUnavailable("The log did not verify: no report can be signed off against it.")
        kind, value = request.args.get("kind", ""), request.args.get("value", "").strip()
        if kind not in ("record", "client") or not _SAFE.match(value):
            raise InvalidQuery("a report is for kind=record or kind=client and a value (an id)")
        subject = Subject(kind=kind, value=value, time_from=parse_time(request.args.get("from"), "from"),
                          time_to=parse_time(request.args.get("to"), "to"))
        try:
            data = evidence(index, subject, checkpoint_note=badge["checkpoint"], key=badge["key"])
        except ReportError as e:
            raise InvalidQuery(str(e)) from e
        response = Response(render(data, subject, badge=badge), mimetype="text/html")
        if request.args.get("download"):
            name = re.sub(r"[^\w.-]", "_", f"report-{kind}-{value}")[:120]
            response.headers["Content-Disposition"] = f'attachment; filename="{name}.html"'
        return response

    return app
