"""`/docs` on a closed network: the Swagger UI's files are served from the package, never from a CDN.

The files in `static/swagger-ui/` are swagger-ui-dist (Apache-2.0, its LICENSE and NOTICE beside them), unmodified.
flask-smorest renders `/docs` with `OPENAPI_SWAGGER_UI_URL` as the prefix of those files: `create_app` points it at
this blueprint. `validatorUrl` is off, so the UI never sends the document to the public validator.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint

SWAGGER_UI_DIR = Path(__file__).resolve().parent / "static" / "swagger-ui"
SWAGGER_UI_URL = "/docs/assets/"
SWAGGER_UI_VERSION = "5.35.0"

bp = Blueprint("docs_assets", __name__, static_folder=str(SWAGGER_UI_DIR), static_url_path=SWAGGER_UI_URL.rstrip("/"))

SWAGGER_UI_CONFIG = {
    "validatorUrl": None,  # the public validator would receive the document: never on a closed network
    "deepLinking": True,
    "displayOperationId": False,
}
