"""Benchmark the exchange against a bare Flask endpoint measured in the same run.

    .venv/bin/python bench/run.py [--duration 10] [--concurrency 8] [--workers 2] [--warmup 1]
                                  [--database-url postgresql+psycopg://root@127.0.0.1:5432/test]
                                  [--case NAME ...] [--rounds 1] [--returnees 100] [--json out.json]

Sets up a scratch database (a temporary SQLite file, or a scratch `exchange_bench_<random>` database on the given
PostgreSQL server, dropped at the end) with demo returnees, serves the apps under gunicorn on 127.0.0.1, and measures
in the order baseline, case 1, baseline, case 2, ..., baseline (`--rounds` repeats it). Each case's ratio is taken
against the baseline runs just before and after its own runs; the table's baseline row is all baseline runs together.
Exit status: 0, 1 when any request failed, 2 when the set-up failed.

To add a case, append a `Case` to `CASES` (see the README).
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    LoadGeneratorError,
    LoadSettings,
    RequestCheckError,
    RequestSpec,
    Result,
    ServerError,
    ServerPool,
    check_request,
    machine_info,
    make_console,
    measure,
    print_results,
    ratio,
)
from rich.console import Console
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from exchange import migrate
from exchange.db import make_engine
from exchange.register.demo import PEOPLE, load_demo_data
from exchange.register.models import Returnee

# --------------------------------------------------------------------------------------------------------------------
# Cases: later issues add theirs to CASES
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchData:
    """What the set-up produced, for cases to build their requests from."""

    database_url: str  # the scratch database the servers use (a case may open its own engine on it)
    keys_dir: str
    returnee_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True)
class Case:
    """One measured request kind.

    `target` is a gunicorn WSGI target importable from bench/ (`module:variable`); servers are shared between cases
    with the same target and env. `request` builds the requests from the set-up's data, in this process; the result
    must be picklable (it crosses into the load-generator process). `env` is added to the server's environment.
    """

    name: str
    target: str
    request: Callable[[BenchData], RequestSpec]
    env: Mapping[str, str] = field(default_factory=dict)
    description: str = ""


# bench_app.py refuses to load without this: it serves the exchange with NO authentication (loopback only).
UNSAFE_BENCH_AUTH = {"EXCHANGE_BENCH_UNSAFE_AUTH": "1"}


def bare_flask(_data: BenchData) -> RequestSpec:
    return RequestSpec(paths=("/bare",))


def register_read(data: BenchData) -> RequestSpec:
    return RequestSpec(paths=tuple(f"/v1/returnees/{returnee_id}" for returnee_id in data.returnee_ids))


BASELINE = Case(
    name="bare Flask",
    target="bare_app:app",
    request=bare_flask,
    description="GET /bare: a constant ~1.5 KB JSON document from a bare Flask app",
)

CASES: list[Case] = [
    Case(
        name="register read",
        target="bench_app:app",
        request=register_read,
        env=UNSAFE_BENCH_AUTH,
        description="GET /v1/returnees/<id> as interior, cycling over every demo returnee",
    ),
]

# --------------------------------------------------------------------------------------------------------------------
# Set-up
# --------------------------------------------------------------------------------------------------------------------


@contextmanager
def scratch_database(server_url: str | None, workdir: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file in `workdir`, or `exchange_bench_<random>` created on the given
    PostgreSQL server and dropped (WITH (FORCE)) on exit."""
    if server_url is None:
        yield f"sqlite:///{workdir / 'exchange.db'}"
        return
    url = make_url(server_url)
    if url.get_backend_name() != "postgresql":
        raise SystemExit("--database-url takes a PostgreSQL server URL (a scratch database is created on it)")
    name = f"exchange_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def load_register(database_url: str, returnees: int) -> tuple[uuid.UUID, ...]:
    """Migrate, load the demo people `ceil(returnees / len(PEOPLE))` times over, return every returnee's id."""
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        for _ in range(max(1, math.ceil(returnees / len(PEOPLE)))):
            with Session(engine) as session:
                load_demo_data(session, append=True)
                session.commit()
        with Session(engine) as session:
            return tuple(session.scalars(select(Returnee.id).order_by(Returnee.register_number)))
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    case: Case
    port: int
    spec: RequestSpec


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Requests/s and latency of the exchange next to a bare Flask endpoint, measured in the same run.",
        epilog="cases: " + "; ".join(f"{c.name!r}: {c.description}" for c in CASES),
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per run (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load before each run")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads, one connection each (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers per server (default 2)")
    parser.add_argument("--database-url", help="PostgreSQL server to create a scratch database on (default: SQLite)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the interleaved schedule this many times")
    parser.add_argument("--returnees", type=int, default=100, help="about this many demo returnees (default 100)")
    parser.add_argument("--case", action="append", metavar="NAME", help="run only this case (repeatable)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 64:
        parser.error("--workers must be in [1, 64]")
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be in [1, 20]")
    if not 1 <= args.returnees <= 10_000:
        parser.error("--returnees must be in [1, 10000]")
    try:
        args.settings = LoadSettings(duration=args.duration, warmup=args.warmup, concurrency=args.concurrency)
    except ValueError as e:
        parser.error(str(e))
    known = {c.name for c in CASES}
    unknown = set(args.case or ()) - known
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}; known: {sorted(known)}")
    return args


def run_schedule(
    baseline: Prepared, cases: Sequence[Prepared], settings: LoadSettings, console: Console, rounds: int = 1
) -> tuple[list[Result], list[tuple[Result, Result]]]:
    """baseline, case 1, baseline, case 2, ..., baseline, repeated `rounds` times (sharing the boundary baseline).

    Returns the baseline runs, and for each case its runs combined paired with the baseline runs just before and just
    after each of them, combined: the ratio then compares the case with the machine as it was at that moment."""
    total = rounds * 2 * len(cases) + 1
    step = 0

    def run(prepared: Prepared) -> Result:
        nonlocal step
        step += 1
        console.print(f"[{step}/{total}] {prepared.case.name} ...", end=" ")
        result = measure(prepared.case.name, prepared.port, prepared.spec, settings)
        console.print(f"{result.rps:.0f} req/s, p50 {result.p50_ms:.2f} ms, {result.errors} errors")
        return result

    baseline_runs = [run(baseline)]
    case_runs: dict[int, list[Result]] = {i: [] for i in range(len(cases))}
    around_runs: dict[int, list[Result]] = {i: [] for i in range(len(cases))}
    for _ in range(rounds):
        for i, prepared in enumerate(cases):
            case_runs[i].append(run(prepared))
            baseline_runs.append(run(baseline))
            around_runs[i] += baseline_runs[-2:]
    pairs = [
        (
            Result.combine(prepared.case.name, case_runs[i]),
            Result.combine(f"{baseline.case.name} (around {prepared.case.name})", around_runs[i]),
        )
        for i, prepared in enumerate(cases)
    ]
    return baseline_runs, pairs


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: servers stopped, scratch database dropped


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    settings: LoadSettings = args.settings
    selected = [c for c in CASES if not args.case or c.name in args.case]
    console = make_console()
    progress = make_console(stderr=True)
    backend = "postgresql" if args.database_url else "sqlite"

    with tempfile.TemporaryDirectory(prefix="exchange-bench-") as tmp:
        workdir = Path(tmp)
        keys_dir = workdir / "keys"
        keys_dir.mkdir(mode=0o700)
        with scratch_database(args.database_url, workdir) as database_url:
            progress.print(f"database: {backend}, loading about {args.returnees} demo returnees ...")
            data = BenchData(database_url, str(keys_dir), load_register(database_url, args.returnees))
            env = {
                "EXCHANGE_DATABASE_URL": database_url,
                "EXCHANGE_KEYS_DIR": str(keys_dir),
                "EXCHANGE_LOG_LEVEL": "WARNING",  # no per-request access log lines
            }
            with ServerPool(workers=args.workers, env=env) as pool:
                try:
                    prepared = []
                    for case in [BASELINE, *selected]:
                        server = pool.get(case.target, case.env)
                        spec = case.request(data)
                        size = check_request(server.port, spec)
                        progress.print(f"{case.name}: {case.target} on 127.0.0.1:{server.port}, "
                                       f"{len(spec.paths)} path(s), first response {size} bytes")
                        prepared.append(Prepared(case, server.port, spec))
                except (ServerError, RequestCheckError) as e:
                    progress.print(f"[red]set-up failed:[/] {e}", highlight=False)
                    return 2
                progress.print(
                    f"{settings.duration:g}s measured after {settings.warmup:g}s warm-up per run, concurrency "
                    f"{settings.concurrency}, {args.workers} sync workers, {len(data.returnee_ids)} returnees, "
                    f"{machine_info()['cpu_count']} CPUs"
                )
                try:
                    baseline_runs, pairs = run_schedule(prepared[0], prepared[1:], settings, progress, args.rounds)
                except LoadGeneratorError as e:
                    progress.print(f"[red]load generator failed:[/] {e}", highlight=False)
                    return 2

    baseline = Result.combine(BASELINE.name, baseline_runs)
    print_results(
        baseline,
        pairs,
        baseline_runs=baseline_runs,
        title=f"{backend}, {args.workers} sync workers, concurrency {settings.concurrency}, "
              f"{settings.duration:g}s per run",
        console=console,
    )
    if args.json:
        report: dict[str, Any] = {
            "settings": {**asdict(settings), "workers": args.workers, "rounds": args.rounds, "database": backend,
                         "returnees": len(data.returnee_ids)},
            "machine": machine_info(),
            "baseline": {**baseline.to_dict(), "run_results": [r.to_dict() for r in baseline_runs]},
            "cases": [
                {**result.to_dict(), "baseline_rps": round(around.rps, 1), "ratio": round(ratio(result, around), 4)}
                for result, around in pairs
            ],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        progress.print(f"wrote {args.json}")
    errors = sum(r.errors for r in baseline_runs) + sum(r.errors for r, _ in pairs)
    if errors:
        console.print(f"[red]{errors} request(s) failed[/]")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # servers and the scratch database were cleaned up on the way out
        print("interrupted", file=sys.stderr)
        sys.exit(130)
