"""Event latency: from the commit of a change to a long-polling partner holding its event (issue 14, events.md).

Serves the exchange under gunicorn on loopback (`bench_app:app`, BENCH-ONLY: no authentication, every loopback
request is interior; gthread workers, so that waiting calls do not take a process each), starts `--partners` partners
that each long-poll `GET /v1/events?after=<cursor>&wait=30` in a loop, and commits unmatched entry crossings (each one
event for interior) at `--rate` per second from this process, through the register service, as the border would.
The latency of an event is the time a partner holds it minus its `occurred_at` (stamped in the writing transaction
just before the commit, so the figure includes the rest of that transaction and its COMMIT: a slight overestimate).
Every partner receives every event; all of them count.

    .venv/bin/python bench/events.py                                 # SQLite (polling every 0.2 s)
    .venv/bin/python bench/events.py --database-url postgresql+psycopg://root@127.0.0.1:5432/test   # LISTEN/NOTIFY

Prints p50/p95/p99/max and whether p99 met the target (<= 1 s on PostgreSQL with 20 partners at 50 writes/s).
No test checks it: the figures are for people to read.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from harness import GunicornServer
from run import UNSAFE_BENCH_AUTH, create_exchange_keys, scratch_database
from sqlalchemy.orm import Session

from exchange import migrate
from exchange.db import make_engine
from exchange.identity import Caller
from exchange.register.services import RegisterService

TARGET_P99_SECONDS = 1.0
BORDER = Caller(agency="border", officer="BENCH-PS-1", scopes=frozenset({"crossings:write"}))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="a PostgreSQL server (a scratch database is made); default SQLite")
    parser.add_argument("--partners", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50.0, help="writes per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of writing")
    parser.add_argument("--writers", type=int, default=4, help="writer threads (in a process of their own)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (gthread)")
    parser.add_argument("--threads", type=int, default=32, help="threads per worker")
    return parser.parse_args(argv)


def writer(database_url: str, rate: float, duration: float, name: str, written: list[int]) -> None:
    """Commit unmatched entries at `rate` per second for `duration` seconds (on schedule: a late one does not shift
    the ones after it)."""
    engine = make_engine(database_url)
    interval = 1.0 / rate
    start = time.monotonic()
    n = 0
    try:
        while time.monotonic() - start < duration:
            with Session(engine) as session:
                RegisterService(session=session, request_id=f"bench-{name}-{n}").record_crossing(BORDER, {
                    "crossing_point": "DYU airport", "direction": "entry", "occurred_at": datetime.now(UTC),
                    "outcome": "admitted", "traveller_name": f"Bench Traveller {name}-{n}"})
                session.commit()
            n += 1
            pause = (n * interval) - (time.monotonic() - start)
            if pause > 0:
                time.sleep(pause)
    finally:
        written.append(n)
        engine.dispose()


def writers(database_url: str, rate: float, duration: float, count: int, result: Any) -> None:
    """`count` writer threads sharing the rate; run in a process of its own, away from the partners' threads."""
    written: list[int] = []
    threads = [threading.Thread(target=writer, args=(database_url, rate / count, duration, str(i), written))
               for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.value = sum(written)


def partner(base: str, stop: threading.Event, start_cursor: str, latencies: list[float], errors: list[str]) -> None:
    cursor = start_cursor
    with httpx.Client(base_url=base, timeout=45) as http:
        while not stop.is_set():
            try:
                response = http.get("/v1/events", params={"after": cursor, "wait": 30, "limit": 500})
            except httpx.HTTPError as e:
                if not stop.is_set():  # the server stopping under the last long polls is no error
                    errors.append(type(e).__name__)
                continue
            held = datetime.now(UTC)
            if response.status_code != 200:
                errors.append(f"http_{response.status_code}")
                continue
            page = response.json()
            for event in page["events"]:
                latencies.append((held - datetime.fromisoformat(event["occurred_at"])).total_seconds())
            cursor = page["next"]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backend = "postgresql" if args.database_url else "sqlite"
    with tempfile.TemporaryDirectory(prefix="exchange-bench-events-") as tmp:
        workdir = Path(tmp)
        keys_dir = workdir / "keys"
        keys_dir.mkdir(mode=0o700)
        with scratch_database(args.database_url, workdir) as database_url:
            engine = make_engine(database_url)
            migrate.upgrade(engine)
            engine.dispose()
            master_key = create_exchange_keys(keys_dir, database_url)
            env = {"EXCHANGE_DATABASE_URL": database_url, "EXCHANGE_KEYS_DIR": str(keys_dir),
                   "EXCHANGE_MASTER_KEY": master_key, "EXCHANGE_LOG_LEVEL": "WARNING", "EXCHANGE_RATE_LIMITS": "off",
                   **UNSAFE_BENCH_AUTH}
            server = GunicornServer("bench_app:app", workers=args.workers, env=env,
                                    extra_args=["--worker-class", "gthread", "--threads", str(args.threads)])
            with server:
                base = server.base_url
                start_cursor = httpx.get(f"{base}/v1/events").json()["next"]
                stop = threading.Event()
                latencies: list[float] = []
                errors: list[str] = []
                partners = [threading.Thread(target=partner, args=(base, stop, start_cursor, latencies, errors),
                                             daemon=True) for _ in range(args.partners)]
                for thread in partners:
                    thread.start()
                time.sleep(1.0)  # let every partner be waiting before the first write
                written = multiprocessing.Value("i", 0)
                process = multiprocessing.Process(target=writers, args=(database_url, args.rate, args.duration,
                                                                        args.writers, written))
                process.start()
                process.join()
                time.sleep(3.0)  # the last events reach everyone
                stop.set()
    expected = written.value * args.partners
    print(f"events benchmark: {backend}, {args.partners} partners long-polling, {args.rate:g} writes/s for "
          f"{args.duration:g} s ({written.value} writes), gunicorn {args.workers} gthread workers x {args.threads}")
    if not latencies:
        print(f"no event received; errors: {errors[:5]}")
        return 1
    print(f"received {len(latencies)} of {expected} events (every partner gets every event); errors: {len(errors)}")
    p99 = percentile(latencies, 99)
    print(f"latency commit -> partner: p50 {percentile(latencies, 50) * 1000:.0f} ms, "
          f"p95 {percentile(latencies, 95) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms, mean {statistics.fmean(latencies) * 1000:.0f} ms")
    verdict = ("met" if p99 <= TARGET_P99_SECONDS else "NOT met") if backend == "postgresql" else \
        "the target is for PostgreSQL"
    print(f"target: p99 <= {TARGET_P99_SECONDS:g} s ({verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
