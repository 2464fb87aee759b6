"""Run the exchange under gunicorn on loopback for tests that need real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

TEST_RATE_LIMIT = "100000/second"  # the rate limits of a test server (see `gunicorn`)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def gunicorn(*, database_url: str, keys_dir: Path, master_key: str, workers: int = 2, log: Path,
             log_level: str = "WARNING") -> Iterator[str]:
    """Start `gunicorn 'exchange:create_app()'`, wait until /healthz answers, yield the base URL, stop it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The rate limits far above what a test's client can send, as in-process apps have them (conftest): a test of
    # rotation or replay under load must not meet the production default of 3,000/minute as the server gets faster.
    env = {"EXCHANGE_RATE_LIMIT_PER_SOURCE": TEST_RATE_LIMIT, "EXCHANGE_RATE_LIMIT_PER_CLIENT": TEST_RATE_LIMIT,
           **os.environ, "EXCHANGE_DATABASE_URL": database_url, "EXCHANGE_KEYS_DIR": str(keys_dir),
           "EXCHANGE_MASTER_KEY": master_key,
           "EXCHANGE_ISSUER": base, "EXCHANGE_LOG_LEVEL": log_level}
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
             "--graceful-timeout", "5", "exchange:create_app()"],
            env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"gunicorn exited: {log.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not start in 30 s")
                time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass(frozen=True)
class LiveExchange:
    """A real exchange (gunicorn) on its own database, for tests that drive it as partners do: over HTTP."""

    base: str
    database_url: str
    workdir: Path

    def register(self, agency: str, client_id: str | None = None) -> tuple[str, Path]:
        """A client of `agency` registered as a security officer would, its three keys in a folder of their own."""
        from sqlalchemy.orm import Session

        from exchange.clients.services import ClientService
        from exchange.db import make_engine
        from exchange.partner import PartnerKeys
        from exchange.protocol.policy import AGENCY_SCOPES

        client_id = client_id or f"{agency}-{uuid.uuid4().hex[:8]}"
        key_dir = self.workdir / "partners" / client_id
        keys = PartnerKeys.generate()
        keys.save(key_dir)
        engine = make_engine(self.database_url)
        with Session(engine) as session:
            ClientService(session=session).register(
                {"client_id": client_id, "agency": agency, "name": f"{agency} (test)",
                 "scopes": sorted(AGENCY_SCOPES[agency]), "keys": keys.registration()}, officer="TJ-SEC-0001")
            session.commit()
        engine.dispose()
        return client_id, key_dir


@contextmanager
def own_database(workdir: Path) -> Iterator[str]:
    """A fresh, migrated database of its own: SQLite in `workdir`, or one on EXCHANGE_TEST_DATABASE_URL's server."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from exchange import migrate
    from exchange.db import make_engine

    admin_url = os.environ.get("EXCHANGE_TEST_DATABASE_URL")
    if not admin_url:
        url = f"sqlite:///{workdir / 'exchange.db'}"
    else:
        name = f"exchange_test_{uuid.uuid4().hex[:12]}"
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        if admin_url:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


@contextmanager
def live_exchange(workdir: Path, *, demo_data: bool = False, workers: int = 2) -> Iterator[LiveExchange]:
    """An exchange with fresh keys on its own database (with the demo register if `demo_data`), under gunicorn."""
    from sqlalchemy.orm import Session

    from exchange.db import make_engine
    from exchange.keys.master import new_master_key
    from exchange.keys.ring import provision

    workdir.mkdir(parents=True, exist_ok=True)
    with own_database(workdir) as database_url:
        master_key = new_master_key()
        engine = make_engine(database_url)
        provision(workdir / "keys", engine, master_key=master_key)
        if demo_data:
            from exchange.register.demo import load_demo_data

            with Session(engine) as session:
                load_demo_data(session)
                session.commit()
        engine.dispose()
        with gunicorn(database_url=database_url, keys_dir=workdir / "keys", master_key=master_key, workers=workers,
                      log=workdir / "gunicorn.log") as base:
            yield LiveExchange(base=base, database_url=database_url, workdir=workdir)
