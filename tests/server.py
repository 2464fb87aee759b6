"""Run the exchange under gunicorn on loopback for tests that need real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


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
    env = {**os.environ, "EXCHANGE_DATABASE_URL": database_url, "EXCHANGE_KEYS_DIR": str(keys_dir),
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
