"""A partner installs the client without the server: `exchange.partner` imports none of the server's dependencies."""

from __future__ import annotations

import subprocess
import sys

SERVER_ONLY = ("flask", "flask_smorest", "sqlalchemy", "marshmallow", "webargs", "alembic", "psycopg", "gunicorn")

PROBE = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {SERVER_ONLY!r}:
            raise ImportError("server-only module imported: " + name)
sys.meta_path.insert(0, Block())
from exchange.partner import ExchangeClient, PartnerKeys
print("ok")
"""


def test_client_imports_without_server_dependencies() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
