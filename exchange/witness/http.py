"""The witness over HTTP (C2SP tlog-witness): `POST /add-checkpoint`, and `GET /` naming the witness's key.

A plain WSGI app (werkzeug, which Flask brings along): the witness is a small service an agency runs on its own
host, with nothing of the exchange's server in it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from exchange.protocol.witness import ADD_CHECKPOINT_PATH, MAX_BODY_BYTES
from exchange.witness.errors import WitnessError
from exchange.witness.services import Witness


def make_wsgi_app(witness: Witness) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = MAX_BODY_BYTES
        response = _answer(witness, request)
        return response(environ, start_response)

    return app


def _answer(witness: Witness, request: Request) -> Response:
    if request.path == "/" and request.method == "GET":
        return Response(witness.identity.public.vkey + "\n", mimetype="text/plain")
    if request.path != ADD_CHECKPOINT_PATH:
        return Response("not found\n", status=404, mimetype="text/plain")
    if request.method != "POST":
        return Response("use POST\n", status=405, mimetype="text/plain", headers={"Allow": "POST"})
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return Response("too large\n", status=413, mimetype="text/plain")
    try:
        body = witness.add_checkpoint(request.get_data(cache=False))
    except RequestEntityTooLarge:
        return Response("too large\n", status=413, mimetype="text/plain")
    except WitnessError as e:
        return Response(e.body, status=e.status, content_type=e.content_type)
    return Response(body, status=200, content_type="text/plain; charset=utf-8")
