"""Benchmark the audit log: appends/s with concurrent workers, full verification of a large log, proof latency.

    .venv/bin/python bench/audit.py [--database-url postgresql+psycopg://root@127.0.0.1:5432/test]
                                    [--workers 4] [--duration 10] [--rounds 3] [--batch 16] [--entries 1000000]
                                    [--proofs 500] [--json out.json]

Works on a scratch database `exchange_bench_<random>` created on the given PostgreSQL server and dropped at the end
(or a temporary SQLite file with `--database-url sqlite`). Prints, without judging:

1. appends/s: `--workers` processes appending for `--duration` seconds, `--rounds` times, the modes interleaved:
   - as an API call does it (the headline): one pooled connection per call; the entry queued in the call's
     transaction, the commit, then its sequencing (batched with whatever the other processes queued meanwhile) and
     its index and leaf hash read back;
   - the same processes doing only what any append serialised on a lock held until commit must do (lock one row,
     update it, commit): the ceiling this machine's commit latency puts on such schemes, which deferred sequencing
     is not bound by;
   - the synchronous path (`record_event`: lock, write, commit in the caller's transaction), one entry and
     `--batch` entries per transaction.
2. building a log of `--entries` entries with the bulk path (leaves made from templates, tree nodes computed here,
   loaded with COPY on PostgreSQL), then the time `exchange audit verify` needs for all of it, from the database
   and from an export file.
3. inclusion and consistency proofs at that size: each is what the API does (read the size, read O(log n) nodes),
   timed per call, and verified.
4. witnesses (witness.md): calls/s through the whole app (an unauthenticated `/v1/` call: refused, recorded,
   sequenced, its receipt signed) with no witness configured, and with three witnesses (`exchange witness serve`,
   processes of their own on loopback, as they run on the agencies' own hosts) and the background checkpointer
   signing every `--checkpoint-seconds` and submitting to them; the two interleaved,
   `--rounds` times, in one process. The ratio (three witnesses / none) is the figure: witnesses work off the
   request path, so it should stay near 1.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nacl.signing
from harness import machine_info, make_console
from rich.table import Table
from run import scratch_database
from sqlalchemy import text
from sqlalchemy.orm import Session

from exchange import migrate
from exchange.audit.entries import Event, encode_entry
from exchange.audit.recorder import deferred, make_event, record_event
from exchange.audit.services import AuditLog, export_lines
from exchange.audit.verify import DatabaseSource, ExportSource, verify_log
from exchange.db import make_engine
from exchange.identity import Caller
from exchange.keys.store import ExchangeKey
from exchange.protocol import merkle
from exchange.protocol.checkpoint import NoteVerifier
from exchange.protocol.merkle import verify_consistency, verify_inclusion

ORIGIN = "exchange.bench/audit"
KEY = ExchangeKey(purpose="audit", created_at=0, signing_key=nacl.signing.SigningKey(b"\x07" * 32))
VERIFIERS = [NoteVerifier(name=ORIGIN, public_key=KEY.public_bytes)]
console = make_console(stderr=True)

# ---- 1. appends/s ---------------------------------------------------------------------------------------------------


def _append_worker(url: str, mode: str, batch: int, start_at: float, duration: float, worker: int) -> int:
    """Append until `start_at + duration`; return how many entries this process appended."""
    engine = make_engine(url)
    caller = Caller(agency="border", client_id=f"bench-{worker}", officer="TJ-PS-017", purpose="border-screening",
                    token_jti="a" * 22, dpop_jti="b" * 22)
    done = 0
    try:
        with Session(engine) as session:
            while time.time() < start_at:
                time.sleep(0.001)
            end = start_at + duration
            while time.time() < end:
                if mode == "ceiling":
                    session.execute(text("UPDATE bench_ceiling SET n = n + 1 WHERE id = 1"))
                    session.commit()
                    done += 1
                elif mode == "call":
                    # What every /v1 call does now (exchange.db, exchange.audit.recorder): one pooled connection for
                    # the request; queue the entry in the call's transaction, commit, then sequence it (with whatever
                    # the other workers queued meanwhile) and read its index and leaf hash.
                    # (On SQLite a call appends in its own transaction instead, as `recorder.deferred` says.)
                    with engine.connect() as connection, Session(bind=connection) as call:
                        log = AuditLog(session=call)
                        event = make_event(
                            action="disclose", outcome="success", status=200, caller=caller,
                            request_id=os.urandom(16).hex(), method="GET",
                            path="/v1/returnees/6f1c1f38-5d4e-4c36-9b59-8a4ef1f7b7a1",
                            record_ids=["6f1c1f38-5d4e-4c36-9b59-8a4ef1f7b7a1"], recipient="border",
                            source_ip="10.20.30.40")
                        if deferred(call):
                            [queued] = log.enqueue([event])
                            call.commit()
                            log.settle(queued)
                        else:
                            log.append([event])
                            call.commit()
                    done += 1
                elif mode == "single":
                    record_event(session, action="disclose", outcome="success", status=200, caller=caller,
                                 request_id=os.urandom(16).hex(), method="GET",
                                 path="/v1/returnees/6f1c1f38-5d4e-4c36-9b59-8a4ef1f7b7a1",
                                 record_ids=["6f1c1f38-5d4e-4c36-9b59-8a4ef1f7b7a1"], recipient="border",
                                 source_ip="10.20.30.40")
                    session.commit()
                    done += 1
                else:
                    now = datetime.now(UTC)
                    AuditLog(session=session).append([
                        Event(time=now, request_id=os.urandom(16).hex(), action="disclose", outcome="success",
                              status=200, method="GET", path="/v1/returnees", agency="border",
                              client_id=f"bench-{worker}", purpose="border-screening", recipient="border",
                              record_ids=("6f1c1f38-5d4e-4c36-9b59-8a4ef1f7b7a1",))
                        for _ in range(batch)
                    ])
                    session.commit()
                    done += batch
    finally:
        engine.dispose()
    return done


MODES = ("ceiling", "call", "single", "batch")


def _warm(_: int) -> int:
    time.sleep(0.2)
    return os.getpid()


def measure_appends(url: str, *, workers: int, duration: float, batch: int, rounds: int,
                    modes: tuple[str, ...] = MODES) -> dict[str, Any]:
    """Each mode for `duration` s, the modes interleaved, `rounds` times: on a shared machine the load drifts, and
    interleaving gives every mode the same share of it. Returns each mode's rate over all its rounds, and per round."""
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS bench_ceiling (id INTEGER PRIMARY KEY, n BIGINT)"))
        connection.execute(text("DELETE FROM bench_ceiling"))
        connection.execute(text("INSERT INTO bench_ceiling VALUES (1, 0)"))
    engine.dispose()
    per_round: dict[str, list[float]] = {mode: [] for mode in modes}
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        pool.map(_warm, range(workers * 4))  # every process started and this module imported before any timing
        for round_ in range(rounds):
            for mode in modes:
                console.print(f"appending: {mode}, {workers} workers, {duration:g} s (round {round_ + 1}/{rounds})")
                start_at = time.time() + 2.0  # every process connected and waiting
                counts = pool.starmap(_append_worker,
                                      [(url, mode, batch, start_at, duration, w) for w in range(workers)])
                per_round[mode].append(sum(counts) / duration)
    results: dict[str, Any] = {mode: statistics.mean(rates) for mode, rates in per_round.items()}
    results["rounds"] = per_round
    return results


# ---- 4. witnesses: calls with three configured vs none ---------------------------------------------------------------


def _witnessed_app(url: str, workdir: Path, witnesses: list[dict[str, str]] | None, interval: int,
                   store: Any = None) -> Any:
    from exchange import create_app
    from exchange.keys.store import InMemoryKeyStore

    store = store or InMemoryKeyStore()
    app = create_app({"DATABASE_URL": url, "KEYS_DIR": str(workdir), "KEYSTORE": store, "LOG_LEVEL": "ERROR",
                      "WITNESSES": json.dumps(witnesses) if witnesses else None, "AUDIT_CHECKPOINT_SECONDS": interval,
                      "AUDIT_BACKGROUND": bool(witnesses)})
    app.extensions["exchange.keystore"].ensure_all()
    return app


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def measure_witnesses(url: str, workdir: Path, *, duration: float, rounds: int, interval: int) -> dict[str, Any]:
    """Calls/s through the app with no witness and with three (processes of their own), interleaved."""
    import logging
    import subprocess
    from contextlib import ExitStack

    import httpx

    from exchange.audit import recorder
    from exchange.witness.services import Witness, init_folder
    from exchange.witness.state import WitnessState

    logging.getLogger("exchange").setLevel(logging.ERROR)
    plain = _witnessed_app(url, workdir / "plain", None, interval)
    origin_vkey = recorder.verifiers(plain)[0].vkey  # the same database: the same registry and audit key
    exchange_cli = str(Path(sys.executable).parent / "exchange")
    with ExitStack() as stack:
        configured = []
        for n in range(3):
            folder = workdir / f"witness-{n}"
            init_folder(folder, name=f"witness-{n}.bench/w1")
            WitnessState(folder / "state.db").add_log(origin=origin_vkey.split("+", 1)[0], vkey=origin_vkey)
            port = _free_port()
            process = subprocess.Popen([exchange_cli, "witness", "serve", "--dir", str(folder), "--port", str(port)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            stack.callback(process.wait)
            stack.callback(process.terminate)
            base = f"http://127.0.0.1:{port}"
            for _ in range(200):  # until it answers
                try:
                    if httpx.get(base + "/", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
            witness = Witness.open(folder)
            configured.append({"name": witness.identity.name, "url": base, "vkey": witness.identity.public.vkey})
        per_round: dict[str, list[float]] = {"none": [], "three": []}
        for round_ in range(rounds):
            for name in ("none", "three"):
                # a fresh app per segment for the witnesses: its checkpointer thread runs during its segment only
                app = plain if name == "none" else _witnessed_app(url, workdir / f"witnessed-{round_}", configured,
                                                                  interval, store=plain.config["KEYSTORE"])
                console.print(f"calls: {name} witnesses, {duration:g} s (round {round_ + 1}/{rounds})")
                with app.test_client() as client:
                    client.get("/v1/returnees")  # starts the background thread (with witnesses)
                    done, end = 0, time.perf_counter() + duration
                    while time.perf_counter() < end:
                        assert client.get("/v1/returnees").status_code == 401
                        done += 1
                per_round[name].append(done / duration)
                stop = app.extensions.get("exchange.checkpointer.stop")
                if stop is not None:
                    stop.set()
                    app.extensions["exchange.checkpointer.thread"].join(timeout=10)
        with Session(make_engine(url)) as session:
            log = AuditLog(session=session)
            latest = log.latest_checkpoint()
            cosigned = len(log.cosignature_lines(latest.size)) if latest else 0
    return {"none": statistics.mean(per_round["none"]), "three": statistics.mean(per_round["three"]),
            "rounds": per_round, "latest_cosignatures": cosigned}


# ---- 2. a large log, built in bulk, then verified --------------------------------------------------------------------


def _templates() -> list[tuple[bytes, bytes, dict[str, Any]]]:
    """Leaves split around the index: `prefix + str(index) + suffix` is the RFC 8785 encoding of the entry (integers
    are written in plain decimal, and `index` is a member of the top-level object only)."""
    rows = []
    for n, (agency, action, purpose) in enumerate([
        ("border", "disclose", "border-screening"), ("interior", "collect", "register-maintenance"),
        ("prosecutor", "disclose", "criminal-proceedings"), ("interior", "consult", "amnesty-vetting"),
        ("border", "consult", "border-screening"), ("auditor", "audit.read", "oversight"),
        ("interior", "alter", "reintegration"), ("border", "deny", "border-screening"),
    ]):
        failed = action == "deny"
        event = Event(time=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n), request_id=f"{n:032x}",
                      action=action, outcome="failure" if failed else "success", status=403 if failed else 200,
                      reason="insufficient_scope" if failed else None, method="GET", path="/v1/returnees",
                      agency=agency, client_id=f"{agency}-gateway-01", officer="TJ-0001", purpose=purpose,
                      record_ids=(f"6f1c1f38-5d4e-4c36-9b59-8a4ef1f7b7a{n}",), token_jti="t" * 22,
                      dpop_jti="d" * 22, source_ip="10.1.2.3")
        marker = 987_654_321_123
        leaf = encode_entry(event.members(index=marker, prev_checkpoint_size=0))
        prefix, suffix = leaf.split(b'"index":%d' % marker)
        columns = {"time": event.time, "action": action, "outcome": event.outcome, "agency": agency,
                   "client_id": event.client_id, "purpose": purpose, "record_id": event.record_ids[0]}
        rows.append((prefix + b'"index":', suffix, columns))
        assert prefix + b'"index":42' + suffix == encode_entry(event.members(index=42, prev_checkpoint_size=0))
    return rows


def _copy(session: Session, table: str, columns: str, rows: Iterator[tuple[Any, ...]]) -> None:
    """COPY rows into a table (PostgreSQL), in the session's transaction."""
    connection = session.connection().connection.driver_connection
    with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:  # type: ignore[union-attr]
        for row in rows:
            copy.write_row(row)


def build_log(url: str, entries: int) -> float:
    """Write `entries` entries, their record ids, every tree node and the head in one bulk transaction."""
    started = time.perf_counter()
    templates = _templates()
    leaves = [templates[i % len(templates)] for i in range(entries)]
    frontier = merkle.Frontier()
    nodes: list[tuple[int, int, bytes]] = []
    entry_rows: list[tuple[Any, ...]] = []
    record_rows: list[tuple[str, int]] = []
    for index, (prefix, suffix, columns) in enumerate(leaves):
        leaf = prefix + str(index).encode() + suffix
        nodes += [(level, i, h) for (level, i), h in frontier.append(merkle.leaf_hash(leaf))]
        entry_rows.append((index, leaf, columns["time"], columns["action"], columns["outcome"], columns["agency"],
                           columns["client_id"], columns["purpose"]))
        record_rows.append((columns["record_id"], index))
    console.print(f"  computed {entries} leaves and {len(nodes)} nodes in {time.perf_counter() - started:.1f} s")
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            if engine.dialect.name == "postgresql":
                _copy(session, "audit_entries", "idx, leaf, time, action, outcome, agency, client_id, purpose",
                      iter(entry_rows))
                _copy(session, "audit_entry_records", "record_id, idx", iter(record_rows))
                _copy(session, "audit_nodes", "level, idx, hash", iter(nodes))
            else:
                keys = ("idx", "leaf", "time", "action", "outcome", "agency", "client_id", "purpose")
                session.execute(text("INSERT INTO audit_entries (idx, leaf, time, action, outcome, agency, "
                                     "client_id, purpose) VALUES (:idx, :leaf, :time, :action, :outcome, "
                                     ":agency, :client_id, :purpose)"), [dict(zip(keys, r, strict=True))
                                                                          for r in entry_rows])
                session.execute(text("INSERT INTO audit_entry_records VALUES (:r, :i)"),
                                [{"r": r, "i": i} for r, i in record_rows])
                session.execute(text("INSERT INTO audit_nodes VALUES (:l, :i, :h)"),
                                [{"l": lv, "i": i, "h": h} for lv, i, h in nodes])
            session.execute(text("INSERT INTO audit_head VALUES (1, :size, :frontier, 0)"),
                            {"size": entries, "frontier": frontier.encode()})
            AuditLog(session=session).checkpoint(signer=KEY, origin=ORIGIN)
            session.commit()
            if engine.dialect.name == "postgresql":
                session.execute(text("ANALYZE"))
                session.commit()
    finally:
        engine.dispose()
    return time.perf_counter() - started


def _timed(what: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = what()
    return time.perf_counter() - started, result


def verify_times(url: str, workdir: Path, entries: int) -> dict[str, float]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            seconds, verified = _timed(lambda: verify_log(DatabaseSource(session), verifiers=VERIFIERS,
                                                          origin=ORIGIN))
            assert verified.checkpoint.size == entries
            export = workdir / "audit.jsonl"
            note = AuditLog(session=session).latest_checkpoint()
            assert note is not None
            write_seconds, _ = _timed(lambda: export.write_text(
                "".join(export_lines(AuditLog(session=session), note=note.note, start=0, end=entries))))
        file_seconds, verified = _timed(lambda: verify_log(ExportSource(export), verifiers=VERIFIERS, origin=ORIGIN))
        assert verified.checkpoint.size == entries
    finally:
        engine.dispose()
    return {"verify_database_s": seconds, "export_write_s": write_seconds, "verify_export_s": file_seconds,
            "export_bytes": float(export.stat().st_size)}


# ---- 3. proofs -------------------------------------------------------------------------------------------------------


def proof_times(url: str, entries: int, count: int) -> dict[str, list[float]]:
    rng = random.Random(7)
    engine = make_engine(url)
    inclusion: list[float] = []
    consistency: list[float] = []
    try:
        with Session(engine) as session:
            log = AuditLog(session=session)
            checkpoint = log.latest_checkpoint()
            assert checkpoint is not None and checkpoint.size == entries
            roots: dict[int, bytes] = {}
            for _ in range(count):
                index = rng.randrange(entries)
                seconds, (proof, leaf_hash) = _timed(lambda i=index: log.inclusion_proof(i, entries))
                inclusion.append(seconds)
                verify_inclusion(proof, leaf_hash=leaf_hash, root=checkpoint.root)
                old = rng.randrange(1, entries)
                seconds, cproof = _timed(lambda o=old: log.consistency_proof(o, entries))
                consistency.append(seconds)
                if len(roots) < 5:  # check a few against roots recomputed from the nodes' own proofs
                    roots[old] = _root_at(log, old)
                    verify_consistency(cproof, old_root=roots[old], new_root=checkpoint.root)
                session.rollback()  # a fresh transaction per pair, as per API call
    finally:
        engine.dispose()
    return {"inclusion": inclusion, "consistency": consistency}


def _root_at(log: AuditLog, size: int) -> bytes:
    """The root of the first `size` entries, from the stored complete subtrees (O(log n) reads)."""
    nodes = log._nodes(set(merkle.subtree_nodes(0, size)))  # noqa: SLF001 (a bench may look inside)
    return merkle.fold([nodes[node] for node in merkle.subtree_nodes(0, size)])


# ---- the run ---------------------------------------------------------------------------------------------------------


def _ms(values: list[float], q: float) -> str:
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgresql+psycopg://root@127.0.0.1:5432/test",
                        help="a PostgreSQL server (a scratch database is created on it), or 'sqlite'")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per append measurement")
    parser.add_argument("--batch", type=int, default=16, help="entries per transaction in the batch measurement")
    parser.add_argument("--rounds", type=int, default=3, help="append measurements interleaved this many times")
    parser.add_argument("--modes", default=",".join(MODES), help=f"append modes to run, of {','.join(MODES)}")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=500, help="inclusion + consistency proof pairs to time")
    parser.add_argument("--skip-appends", action="store_true")
    parser.add_argument("--skip-log", action="store_true", help="skip building, verifying and proving a large log")
    parser.add_argument("--skip-witnesses", action="store_true")
    parser.add_argument("--checkpoint-seconds", type=int, default=2,
                        help="EXCHANGE_AUDIT_CHECKPOINT_SECONDS in the witness measurement")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    server = None if args.database_url == "sqlite" else args.database_url
    out = make_console()
    figures: dict[str, Any] = {"settings": vars(args) | {"json": str(args.json)}, "machine": machine_info()}
    with tempfile.TemporaryDirectory(prefix="exchange-bench-audit-") as workdir:
        for phase in ("appends", "witnesses", "log"):
            if (phase == "appends" and args.skip_appends) or (phase == "log" and args.skip_log) or (
                    phase == "witnesses" and args.skip_witnesses):
                continue
            with scratch_database(server, Path(workdir) / phase) as url:
                (Path(workdir) / phase).mkdir(exist_ok=True)
                engine = make_engine(url)
                migrate.upgrade(engine)
                engine.dispose()
                if phase == "appends":
                    figures["appends_per_s"] = measure_appends(url, workers=args.workers, duration=args.duration,
                                                               batch=args.batch, rounds=args.rounds,
                                                               modes=tuple(args.modes.split(",")))
                    continue
                if phase == "witnesses":
                    figures["witness_calls_per_s"] = measure_witnesses(url, Path(workdir) / phase,
                                                                       duration=args.duration, rounds=args.rounds,
                                                                       interval=args.checkpoint_seconds)
                    continue
                console.print(f"building a log of {args.entries} entries (bulk path)")
                figures["build_s"] = build_log(url, args.entries)
                console.print("verifying it (database, then an export)")
                figures |= verify_times(url, Path(workdir), args.entries)
                console.print(f"timing {args.proofs} inclusion and consistency proofs")
                figures["proof_s"] = proof_times(url, args.entries, args.proofs)

    table = Table(title=f"audit log on {'PostgreSQL' if server else 'SQLite'}, {os.cpu_count()} CPUs")
    table.add_column("measure")
    table.add_column("figure", justify="right")
    table.add_column("target", justify="right")
    rates = figures.get("appends_per_s", {})
    # each mode that was run (`--modes`), and the ratio of the API-call appends to the ceiling when both were
    if "call" in rates:
        how = "queue + commit + sequence" if server else "append + commit (SQLite)"
        table.add_row(f"appends/s, {args.workers} workers, as an API call: {how}", f"{rates['call']:,.0f}", "")
    if "ceiling" in rates:
        table.add_row(f"  ceiling: lock + update + commit, {args.workers} workers", f"{rates['ceiling']:,.0f}/s", "")
    if {"call", "ceiling"} <= rates.keys():
        rounds = rates["rounds"]
        table.add_row("  API-call appends / ceiling (per round)", f"{rates['call'] / rates['ceiling']:.2f}x ("
                      + ", ".join(f"{c / x:.2f}" if x else "-" for c, x in zip(rounds["call"], rounds["ceiling"],
                                                                               strict=True)) + ")", "")
    if "single" in rates:
        table.add_row(f"appends/s, {args.workers} workers, synchronous, 1 entry per transaction (record_event)",
                      f"{rates['single']:,.0f}", "")
    if "batch" in rates:
        table.add_row(f"appends/s, {args.workers} workers, synchronous, {args.batch} entries per transaction",
                      f"{rates['batch']:,.0f}", "must not fall (5,556)")
    witnessed = figures.get("witness_calls_per_s")
    if witnessed:
        rounds = witnessed["rounds"]
        table.add_row("calls/s through the app, no witness", f"{witnessed['none']:,.0f}", "")
        table.add_row(f"calls/s, three witnesses + checkpoints every {args.checkpoint_seconds} s "
                      f"(latest checkpoint: {witnessed['latest_cosignatures']} cosignatures)",
                      f"{witnessed['three']:,.0f}", "")
        table.add_row("  three witnesses / none (per round)", f"{witnessed['three'] / witnessed['none']:.2f}x ("
                      + ", ".join(f"{t / n:.2f}" for t, n in zip(rounds["three"], rounds["none"], strict=True))
                      + ")", ">= 0.95x")
    if "build_s" not in figures:
        out.print(table)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2, default=str))
        return 0
    table.add_row(f"build {args.entries:,} entries (bulk)", f"{figures['build_s']:.1f} s", "")
    table.add_row(f"verify {args.entries:,} entries from the database", f"{figures['verify_database_s']:.1f} s",
                  "<= 10 s")
    table.add_row(f"verify {args.entries:,} entries from an export "
                  f"({figures['export_bytes'] / 2**20:,.0f} MiB, written in {figures['export_write_s']:.1f} s)",
                  f"{figures['verify_export_s']:.1f} s", "")
    proofs = figures["proof_s"]
    pairs = [a + b for a, b in zip(proofs["inclusion"], proofs["consistency"], strict=True)]
    for name, values in (("inclusion proof", proofs["inclusion"]), ("consistency proof", proofs["consistency"]),
                         ("inclusion + consistency", pairs)):
        table.add_row(f"{name} at {args.entries:,}: mean / p50 / p99 ms",
                      f"{statistics.mean(values) * 1000:.2f} / {_ms(values, 0.5)} / {_ms(values, 0.99)}",
                      "<= 5 ms" if name.startswith("inclusion +") else "")
    out.print(table)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
