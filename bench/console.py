"""The auditor's console at scale: build an N-entry export (default 1,000,000), load and verify it, time searches.

    .venv/bin/python bench/console.py                 # 1,000,000 entries in a temporary folder
    .venv/bin/python bench/console.py --entries 200000 --keep DIR

Prints the time to load + verify + index the export (target: 60 s for 1,000,000) and the latency of searches and of
a returnee's history through the console's web layer (target: 200 ms). No test checks these; people read them.
The entries are realistic in shape (every audit.md member, the exchange's agencies, purposes and actions, 20,000
returnees, 60 clients over 90 days) and encoded as the exchange encodes them (RFC 8785: sorted keys, no spaces).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nacl.signing

from exchange.audit.services import EXPORT_FORMAT
from exchange.console.loader import Loader, Settings, export_source
from exchange.console.store import Reviews
from exchange.console.web import create_console
from exchange.protocol import merkle
from exchange.protocol.checkpoint import Checkpoint, NoteVerifier, sign_checkpoint
from exchange.protocol.encoding import b64url

ORIGIN = "bench.local/audit"
AGENCIES = {"interior": ("register-maintenance", "amnesty-vetting", "reintegration"),
            "border": ("border-screening",), "prosecutor": ("criminal-proceedings", "amnesty-review"),
            "auditor": ("oversight",)}


def build(path: Path, count: int, key: nacl.signing.SigningKey) -> tuple[str, list[str], list[str]]:
    """Write the export; return the verifier key, some returnee ids and some client ids."""
    rng = random.Random(15)
    returnees = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(20_000)]
    clients = [(agency, f"{agency}-{n}") for agency in AGENCIES for n in range(15)]
    start = datetime(2026, 1, 5, tzinfo=UTC)
    step = 90 * 86400 / count
    frontier = merkle.Frontier()
    dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
    with path.open("w", encoding="utf-8") as f:
        f.write(" " * 4096 + "\n")  # the header, written at the end once the root is known
        for index in range(count):
            agency, client = clients[rng.randrange(len(clients))]
            returnee = returnees[rng.randrange(len(returnees))]
            denied = rng.random() < 0.02
            action = "deny" if denied else rng.choice(("consult", "consult", "disclose", "collect", "alter"))
            moment = start + timedelta(seconds=index * step)
            members = {
                "v": 1, "index": index, "time": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "request_id": f"{index:032x}", "action": action, "outcome": "failure" if denied else "success",
                "status": 403 if denied else 200, "reason": "not_permitted" if denied else None, "agency": agency,
                "client_id": client, "officer": f"TJ-{agency.upper()}-{rng.randrange(40):03d}",
                "purpose": rng.choice(AGENCIES[agency]),
                "case_ref": None if rng.random() < 0.1 else f"CASE-{rng.randrange(5000)}",
                "method": "GET", "path": f"/v1/returnees/{returnee}", "record_ids": [returnee],
                "recipient": None if agency == "interior" or denied else agency,
                "source_ip": f"10.0.{rng.randrange(4)}.{rng.randrange(250)}", "token_jti": f"{index:022x}",
                "dpop_jti": f"{index:022x}", "envelope": None, "prev_checkpoint_size": index - index % 1000,
            }
            leaf = dumps(members).encode("utf-8")
            leaf_hash = merkle.leaf_hash(leaf)
            frontier.push(leaf_hash)
            f.write(f'{{"index":{index},"leaf":"{b64url(leaf)}","leaf_hash":"{b64url(leaf_hash)}"}}\n')
    public = bytes(key.verify_key)
    note = sign_checkpoint(Checkpoint(origin=ORIGIN, size=count, root=frontier.root()), public_key=public,
                           sign=lambda m: key.sign(m).signature)
    header = json.dumps({"format": EXPORT_FORMAT, "checkpoint": note, "start": 0, "end": count},
                        separators=(",", ":"))
    with path.open("r+", encoding="utf-8") as f:  # the header line keeps its length: pad with spaces (valid JSON)
        f.write(header.ljust(4096))
    return NoteVerifier(name=ORIGIN, public_key=public).vkey, returnees[:200], [c for _, c in clients]


def _ids(export: Path, key: nacl.signing.SigningKey) -> tuple[str, list[str], list[str]]:
    """The verifier key and the ids `build` used, for an export built before (the same seeds)."""
    rng = random.Random(15)
    returnees = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(20_000)]
    clients = [f"{agency}-{n}" for agency in AGENCIES for n in range(15)]
    return NoteVerifier(name=ORIGIN, public_key=bytes(key.verify_key)).vkey, returnees[:200], clients


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="Build and load in this folder and keep it.")
    parser.add_argument("--reuse", action="store_true", help="With --keep: load the export built there before.")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="console-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    export = folder / "audit.jsonl"
    key = nacl.signing.SigningKey(b"\x15" * 32)
    began = time.perf_counter()
    if args.reuse and export.exists():
        vkey, returnees, clients = _ids(export, key)
    else:
        vkey, returnees, clients = build(export, args.entries, key)
    print(f"export of {args.entries:,} entries ({export.stat().st_size / 1e6:.0f} MB) ready in "
          f"{time.perf_counter() - began:.1f} s", flush=True)

    index = folder / "index.sqlite"
    index.unlink(missing_ok=True)
    settings = Settings(index_path=index, state_path=folder / "state.json", keys=(vkey,), keep_state=False)
    loader = Loader(settings, export_source(export, (vkey,)))
    began, cpu = time.perf_counter(), time.process_time()
    loader.start()
    assert loader.thread.ident is not None
    clock = time.pthread_getcpuclockid(loader.thread.ident)
    thread_cpu, last_report = 0.0, began
    while loader.thread.is_alive():
        loader.thread.join(0.2)
        try:
            thread_cpu = time.clock_gettime(clock)
        except OSError:  # the thread ended between the join and the read: its last reading stands (within 0.2 s)
            pass
        if time.perf_counter() - last_report >= 5:
            last_report, status = time.perf_counter(), loader.status
            print(f"  {status.phase} {status.done:,}/{status.total or 0:,} at {last_report - began:.0f} s",
                  file=sys.stderr, flush=True)
    loaded, cpu = time.perf_counter() - began, time.process_time() - cpu
    badge = loader.status.badge or {}
    print(f"load + verify + index: {loaded:.1f} s wall, {cpu:.1f} s CPU, {thread_cpu:.1f} s CPU on the loader's thread "
          f"for {args.entries:,} entries (target 60 s), load average {os.getloadavg()[0]:.1f}: "
          f"{'verified' if badge.get('ok') else 'FAILED ' + str(badge.get('reason'))}, {badge.get('flags')} flags",
          flush=True)
    print("  (CPU: all threads; the loader's thread is the critical path: what the wall time approaches on an idle "
          "machine with a second core for the index writer and SQLite's sorts; the wall time is what this machine's "
          "load allowed)", flush=True)

    app = create_console(loader, Reviews(folder / "reviews.sqlite"), port=1)
    app.config["SERVER_NAME"] = "127.0.0.1:1"
    client = app.test_client()
    rng = random.Random(7)
    cases = {
        "returnee history": lambda: f"/api/history/{rng.choice(returnees)}",
        "search agency": lambda: f"/api/search?agency={rng.choice(list(AGENCIES))}",
        "search client": lambda: f"/api/search?client_id={rng.choice(clients)}",
        "search client+time": lambda: f"/api/search?client_id={rng.choice(clients)}&from=2026-02-01&to=2026-02-02",
        "search officer+outcome": lambda: "/api/search?officer=TJ-BORDER-007&outcome=failure",
        "search case ref": lambda: f"/api/search?case_ref=CASE-{rng.randrange(5000)}",
        "search purpose+action": lambda: "/api/search?purpose=amnesty-review&action=disclose",
        "search time range": lambda: "/api/search?from=2026-03-01T10:00:00Z&to=2026-03-01T11:00:00Z",
        "search page 20": lambda: f"/api/search?agency=border&before={args.entries // 2}",
        "flags": lambda: "/api/flags",
        "charts": lambda: "/api/charts",
    }
    print(f"{'query':<24} {'p50 ms':>8} {'max ms':>8} {'CPU p50':>8}   (20 runs each, through the web layer; "
          "target 200 ms)")
    for name, url in cases.items():
        times, cpus = [], []
        for _ in range(20):
            t0, c0 = time.perf_counter(), time.process_time()
            response = client.get(url())
            times.append((time.perf_counter() - t0) * 1000)
            cpus.append((time.process_time() - c0) * 1000)
            assert response.status_code == 200, response.get_json()
        print(f"{name:<24} {statistics.median(times):8.1f} {max(times):8.1f} {statistics.median(cpus):8.1f}",
              flush=True)
    if not args.keep:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
