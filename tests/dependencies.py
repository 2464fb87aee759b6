"""Dependencies of our own for outage and limit tests: a PostgreSQL cluster (`pg_createcluster`) and a redis-server,
each on a free port, which a test may stop and start (the shared ones must never be stopped)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from exchange import migrate
from exchange.db import make_engine
from tests.server import free_port

PG_VERSION = "15"


def _run(*args: str) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)


def wait_until(check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    """Wait for something that happens outside the test (a server starting); not a timing assertion."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds} s")
        time.sleep(0.1)


def postgres_cluster() -> Iterator[PgCluster]:
    """A created and started cluster with a migrated `exchange` database (skips when that is impossible here)."""
    if shutil.which("pg_createcluster") is None or shutil.which("pg_ctlcluster") is None:
        pytest.skip("pg_createcluster is not installed: the PostgreSQL outage test needs a cluster of its own")
    cluster = PgCluster()
    try:
        cluster.create()
    except (subprocess.CalledProcessError, OSError) as e:
        cluster.drop()
        stderr = getattr(e, "stderr", b"") or b""
        pytest.skip(f"cannot create a PostgreSQL cluster here: {stderr.decode(errors='replace').strip()[:200]}")
    try:
        yield cluster
    finally:
        cluster.drop()


def redis_instance(directory: Path) -> Iterator[RedisServer]:
    """A started redis-server of our own (skips when there is none)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: this test needs a Redis of its own")
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class PgCluster:
    """A PostgreSQL cluster of our own (`pg_createcluster`), which the test may stop and start."""

    def __init__(self) -> None:
        self.name = f"exchange_outage_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/exchange"

    def _ctl(self, action: str) -> None:
        mode = ["--mode", "fast"] if action == "stop" else []
        _run("pg_ctlcluster", "--skip-systemctl-redirect", *mode, PG_VERSION, self.name, action)

    def create(self) -> None:
        _run("pg_createcluster", PG_VERSION, self.name, "-p", str(self.port), "--",
             "--auth-host=trust", "--auth-local=trust", "--no-sync")
        self.start()
        admin = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text("CREATE DATABASE exchange"))
        admin.dispose()
        engine = make_engine(self.url)
        migrate.upgrade(engine)
        engine.dispose()

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("stop")

    def drop(self) -> None:
        subprocess.run(["pg_dropcluster", "--stop", PG_VERSION, self.name], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


class RedisServer:
    """A redis-server of our own on a free port, without persistence (as the shared one runs)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis.from_url(self.url)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(up, "redis-server answering")
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None
