"""`exchange demo`: the three agencies at work, through the partner client library, against a real HTTP server.

It starts the exchange on a fresh SQLite database with fresh keys (in a temporary folder unless told where),
registers one client per agency as a security officer would, and plays the story of domain.md: a relative calls the
hotline; interior expects the returnee and issues ASSIST_RETURN; the border screens a Latin-spelled name, records the
entry and an emergency travel document; interior vets; the prosecutor grants amnesty for one returnee and files
charges for another; a DETAIN instruction stops a third at the border: the border screens a bus manifest, and
interior, long-polling its events in a follower thread, is told of the hit as it happens. Every call is a real token,
DPoP proof, sealed request and verified, audited response, whose signed receipt each agency keeps. Each agency also
runs its own witness (`exchange witness`, on a free loopback port, its own key and state): the exchange signs a
checkpoint every second and submits it to them in the background. It ends with the size of the audit log and a
checkpoint cosigned by the three witnesses, verified with a quorum of all three.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from exchange.clients.services import ClientService
from exchange.db import dispose_engines, make_engine
from exchange.keys.master import MasterSecret, new_master_key, unlock
from exchange.keys.ring import KeyRing, provision
from exchange.keys.store import FileKeyStore
from exchange.partner import ExchangeClient, PartnerKeys
from exchange.partner.errors import ConflictError
from exchange.protocol.cosignature import WitnessPolicy
from exchange.protocol.policy import AGENCY_SCOPES, PURPOSES

COLOURS = {"interior": "cyan", "border": "yellow", "prosecutor": "magenta", "security": "green", "auditor": "blue"}
WITNESS_AGENCIES = ("interior", "border", "prosecutor")
AGENCY_PURPOSE = {"interior": "register-maintenance", "border": "border-screening", "prosecutor": "amnesty-review",
                  "auditor": "oversight"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _key_ring(keys_dir: Path, engine: Engine, *, keep: bool) -> KeyRing:
    """The demo's keys: sealed under the environment's master secret when the demo is kept (`keep`) and one is set,
    so that `exchange audit ...` can open the store afterwards; else under a master key that lives only in this
    process (the database stays readable, the key store does not)."""
    secret = MasterSecret.from_environment()
    if not (keep and secret.present):
        return provision(keys_dir, engine, master_key=new_master_key())
    ring = KeyRing(engine=engine, store=FileKeyStore(keys_dir, master=unlock(keys_dir, secret, create=True)))
    ring.ensure_all()
    return ring


@contextmanager
def _served(app: Any, name: str) -> Iterator[str]:
    """A WSGI app on a free loopback port, by a threaded werkzeug server; yields its base URL."""
    server = make_server("127.0.0.1", _free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@contextmanager
def _witnesses(workdir: Path, log_vkey: str) -> Iterator[list[dict[str, str]]]:
    """One witness per agency (`exchange witness init` + `serve`), each with its own key and state in `workdir`."""
    from exchange.witness.http import make_wsgi_app
    from exchange.witness.services import Witness, init_folder
    from exchange.witness.state import WitnessState

    with ExitStack() as stack:
        found = []
        for agency in WITNESS_AGENCIES:
            folder = workdir / f"witness-{agency}"
            if not (folder / "witness.key").exists():
                init_folder(folder, name=f"witness.{agency}.demo/w1")
            WitnessState(folder / "state.db").add_log(origin=log_vkey.split("+", 1)[0], vkey=log_vkey)
            witness = Witness.open(folder)
            url = stack.enter_context(_served(make_wsgi_app(witness), f"witness-{agency}"))
            found.append({"name": witness.identity.name, "url": url, "vkey": witness.identity.public.vkey})
        yield found


@contextmanager
def _serving(workdir: Path, port: int, *, keep: bool = False) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """The exchange on SQLite in `workdir`, served over HTTP on loopback by a threaded werkzeug server, with one
    witness per agency; yields its base URL and the witnesses."""
    from exchange import create_app, migrate
    from exchange.protocol.checkpoint import NoteVerifier

    database_url = f"sqlite:///{workdir / 'exchange.db'}"
    migrate.upgrade(make_engine(database_url))
    engine = make_engine(database_url)
    ring = _key_ring(workdir / "keys", engine, keep=keep)
    log_vkey = NoteVerifier(name="exchange.local/audit", public_key=ring.active("audit").public_bytes).vkey
    base = f"http://127.0.0.1:{port}"
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the story is the output, not an access log
    with _witnesses(workdir, log_vkey) as witnesses:
        app = create_app({"DATABASE_URL": database_url, "KEYS_DIR": str(workdir / "keys"), "ISSUER": base,
                          "LOG_LEVEL": "WARNING", "KEYSTORE": ring.store, "WITNESSES": json.dumps(witnesses),
                          "AUDIT_CHECKPOINT_SECONDS": 1})
        server = make_server("127.0.0.1", port, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="exchange-demo", daemon=True)
        thread.start()
        try:
            yield base, witnesses
        finally:
            server.shutdown()
            thread.join(timeout=10)
            stop, checkpointer = (app.extensions.get("exchange.checkpointer.stop"),
                                  app.extensions.get("exchange.checkpointer.thread"))
            if stop is not None and checkpointer is not None:
                stop.set()
                checkpointer.join(timeout=10)
            dispose_engines()


def _register_clients(database_url: str, base: str, *, workdir: Path,
                      witnesses: WitnessPolicy) -> dict[str, ExchangeClient]:
    """One client per agency, registered as a security officer would (`exchange clients add`)."""
    clients: dict[str, ExchangeClient] = {}
    engine = make_engine(database_url)
    with Session(engine) as session:
        service = ClientService(session=session)
        for agency in ("interior", "border", "prosecutor", "auditor"):
            keys = PartnerKeys.generate()
            client_id = f"demo-{agency}"
            service.register({"client_id": client_id, "agency": agency, "name": f"{agency} (demo)",
                              "scopes": sorted(AGENCY_SCOPES[agency]), "keys": keys.registration()},
                             officer="TJ-SEC-0001")
            clients[agency] = ExchangeClient(base, client_id=client_id, agency=agency, keys=keys,
                                             purpose=AGENCY_PURPOSE[agency], officer=f"TJ-{agency.upper()}-001",
                                             receipts=workdir / f"receipts-{agency}", witnesses=witnesses)
        session.commit()
    engine.dispose()
    return clients


def _story(clients: dict[str, ExchangeClient], say: Callable[[str, str], None]) -> dict[str, Any]:
    interior, border, prosecutor = clients["interior"], clients["border"], clients["prosecutor"]

    def register(given: str, surname: str, latin: str, birth: str, summary: str, relation: str) -> dict[str, Any]:
        contact = interior.hotline_contacts.create({
            "new_returnee": {"person_name": {"given": given, "surname": surname}, "birth_date": birth,
                             "sex": "male", "citizenship": "TJ",
                             "name_variants": [{"value": latin, "script": "latn", "kind": "transliteration"}]},
            "received_at": "2026-11-02T09:14:00+00:00", "channel": "relative", "caller_relation": relation,
            "location_country": "TR", "intent_to_return": True, "summary": summary}).data
        returnee: dict[str, Any] = interior.returnees.get(contact["returnee_id"]).data
        say("interior", f"hotline: a {relation} calls about {given} {surname}: registered "
                        f"{returnee['register_number']} ({returnee['status']})")
        return returnee

    def walk_to_review(returnee: dict[str, Any], crossing_point: str, etd: str) -> None:
        number = returnee["register_number"]
        interior.border_instructions.create({"returnee_id": returnee["id"], "instruction": "ASSIST_RETURN",
                                             "reason": "Genuine wish to return; help with documents."})
        say("interior", f"{number}: ASSIST_RETURN to every border post -> expected")
        latin = returnee["name_variants"][0]["value"]
        hits = border.screening.by_name(latin, birth_date=returnee["birth_date"][:4]).data["candidates"]
        top = hits[0]
        say("border", f"screening '{latin}' b. {returnee['birth_date'][:4]}: {top['returnee']['register_number']} "
                      f"'{top['matched_value']}' score {top['score']}, instruction "
                      f"{(top['returnee']['active_border_instruction'] or {}).get('instruction', '-')}")
        border.border_crossings.create({"returnee_id": top["returnee"]["id"], "crossing_point": crossing_point,
                                        "direction": "entry", "occurred_at": "2026-11-20T06:40:00+00:00",
                                        "emergency_document_number": etd, "outcome": "handed_over"})
        say("border", f"{number}: entry at {crossing_point}, emergency travel document {etd} -> arrived")
        interior.returnees.transition(returnee["id"], "under_vetting")
        interior.vetting_assessments.create({
            "returnee_id": returnee["id"], "interviewed_at": "2026-11-21T10:00:00+00:00",
            "genuine_repentance": "yes", "risk_level": "low", "findings": "Consistent account of travel and return.",
            "reintegration_plan": "Vocational training in Vahdat.", "source_reliability": "B",
            "information_accuracy": "2"})
        interior.returnees.transition(returnee["id"], "vetted")
        interior.returnees.transition(returnee["id"], "under_review")
        say("interior", f"{number}: interviewed; account graded B2 (source usually reliable, information known "
                        "to the source: the Europol 4x4 grading), vetted, sent to the prosecutor -> under_review")

    jurabek = register("Ҷӯрабек", "Назаров", "Jurabek Nazarov", "1991-07-03",
                       "His mother says he regrets joining and wants to come home.", "mother")
    walk_to_review(jurabek, "Dushanbe International Airport", "ETD-2026-0417")
    amnesty = prosecutor.prosecutorial_decisions.create({
        "returnee_id": jurabek["id"], "decision": "amnesty_granted", "statute": "Criminal Code art. 401-1",
        "case_number": "GP-2026-0311", "decided_at": "2026-11-24T12:00:00+00:00"})
    decision = amnesty.data
    say("prosecutor", f"{jurabek['register_number']}: {decision['decision']} (art. 401-1, voluntary return)")

    bahodur = register("Баҳодур", "Шарипов", "Bahodur Sharipov", "1985-01-14",
                       "His brother reports he left the group and is in Turkey.", "brother")
    walk_to_review(bahodur, "Panji Poyon", "ETD-2026-0418")
    decision = prosecutor.prosecutorial_decisions.create({
        "returnee_id": bahodur["id"], "decision": "charges_filed", "statute": "Criminal Code art. 401-1",
        "case_number": "GP-2026-0312", "decided_at": "2026-11-24T15:00:00+00:00",
        "notes": "Evidence of a command role."}).data
    say("prosecutor", f"{bahodur['register_number']}: {decision['decision']} (evidence of a command role)")

    orif = register("Ориф", "Давлатов", "Orif Davlatov", "1982", "An informant says he means to recruit.", "neighbour")
    interior.border_instructions.create({"returnee_id": orif["id"], "instruction": "DETAIN",
                                         "reason": "Warrant 17/2015: recruitment for an armed group."})
    say("interior", f"{orif['register_number']}: DETAIN to every border post (the reason is kept from the border)")
    told = _follow_hits(interior)  # interior's case system long-polls its events from now on
    hit = border.screening.manifest([{"name": "Orif Davlatov", "birth_date": "1982", "nationality": "TJ",
                                      "flight": "SM 1207", "crossing_point": "Panji Poyon"},
                                     {"name": "Zarina Mirzoeva", "birth_date": "1990", "nationality": "TJ",
                                      "flight": "SM 1207", "crossing_point": "Panji Poyon"}]
                                    ).data["travellers"][0]["candidates"][0]
    instruction = hit["returnee"]["active_border_instruction"]
    say("border", f"manifest of bus SM 1207 (2 travellers): 'Orif Davlatov' b. 1982 is "
                  f"{hit['returnee']['register_number']} score {hit['score']}")
    say("border", f"{hit['returnee']['register_number']}: {instruction['instruction']}"
                  + (" (the border sees the instruction, never its reason)" if "reason" not in instruction else ""))
    event = told.get(timeout=35)
    seen = event["record"]["active_border_instruction"]["instruction"]
    say("interior", f"told as it happened: {event['type']} on {event['record']['register_number']} at "
                    f"{event['screening']['crossing_point']} ({seen}, officer {event['screening']['officer']}, "
                    f"caused by {event['cause']['agency']})")
    border.border_crossings.create({"returnee_id": hit["returnee"]["id"], "crossing_point": "Panji Poyon",
                                    "direction": "entry", "occurred_at": "2026-11-25T05:10:00+00:00",
                                    "outcome": "detained"})
    say("border", f"{orif['register_number']}: stopped at Panji Poyon: the crossing's outcome is detained; in the "
                  "register he is now arrived (in the country, held for interior)")
    final = [interior.returnees.get(r["id"]).data for r in (jurabek, bahodur, orif)]

    if amnesty.audit is None:  # the client library never returns a verified result without its receipt
        raise RuntimeError("the amnesty decision came back without its audit receipt")
    checkpoint = _when_witnessed(lambda: prosecutor.audit.verify(amnesty.audit))  # type: ignore[arg-type]
    say("prosecutor", f"the amnesty decision is audit entry {amnesty.audit.index}: its inclusion proof in the "
                      f"exchange's signed checkpoint of {checkpoint.size} entries verifies, cosigned by at least "
                      f"{prosecutor._connection.witnesses.quorum} of the agencies' witnesses")
    _oversight(clients["auditor"], jurabek, say)
    return {"returnees": final}


T = TypeVar("T")


def _when_witnessed(check: Callable[[], T], *, timeout: float = 30.0) -> T:
    """`check()`, again while the entry is not yet in a witnessed checkpoint (409 `checkpoint_pending`: the service
    signs one every second and its witnesses cosign it in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except ConflictError as e:
            if e.code != "checkpoint_pending" or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _witnessed(auditor: ExchangeClient, witnesses: WitnessPolicy, say: Callable[[str, str], None]) -> None:
    """The auditor reads the checkpoint the exchange serves and accepts it only with all three cosignatures."""
    from exchange.protocol.checkpoint import NoteVerifier
    from exchange.protocol.cosignature import QuorumNotMet, verify_witnessed

    everyone = WitnessPolicy(witnesses=witnesses.witnesses, quorum=len(witnesses.witnesses))
    deadline = time.monotonic() + 30
    while True:
        note = auditor.audit.checkpoint()
        origin = note.split("\n", 1)[0]
        verifiers = [NoteVerifier(name=origin, public_key=k) for k in auditor._connection.published_keys().audit]
        try:
            signed, cosigned = verify_witnessed(note, verifiers, origin=origin, policy=everyone)
            break
        except QuorumNotMet:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    say("auditor", f"the exchange's checkpoint of {signed.size} entries is cosigned by "
                   + ", ".join(sorted(c.name for c in cosigned)) + " (quorum: all three)")
def _follow_hits(interior: ExchangeClient) -> queue.Queue[dict[str, Any]]:
    """A follower thread, as interior's case system would run one: it long-polls interior's events (from the newest
    on) and hands over the first `screening.hit`."""
    found: queue.Queue[dict[str, Any]] = queue.Queue()
    start = interior.events.poll(limit=500).data["next"]
    while True:  # skip to the newest cursor
        page = interior.events.poll(after=start, limit=500).data
        if not page["events"]:
            break
        start = page["next"]

    def follow() -> None:
        for event in interior.events.follow(after=start, wait=30):
            if event["type"] == "screening.hit":
                found.put(event)
                return

    threading.Thread(target=follow, name="interior-follower", daemon=True).start()
    return found


def _oversight(auditor: ExchangeClient, returnee: dict[str, Any], say: Callable[[str, str], None]) -> None:
    """The auditor asks who touched one returnee's records and why, then verifies the whole log through the API."""
    from exchange.audit.remote import ServerSource
    from exchange.audit.verify import verify_log
    from exchange.protocol.checkpoint import NoteVerifier
    from exchange.protocol.encoding import b64url_decode

    items = auditor.audit.search(record_id=returnee["id"], limit=1000).data["items"]
    calls: Counter[str] = Counter()
    for item in items:
        entry = json.loads(b64url_decode(item["leaf"]))
        calls[f"{entry['agency']} {entry['action']} ({entry['purpose']})"] += 1
    say("auditor", f"who touched {returnee['register_number']}: {len(items)} calls: "
                   + ", ".join(f"{what} x{n}" for what, n in sorted(calls.items())))
    origin = auditor.audit.checkpoint().split("\n", 1)[0]
    verifiers = [NoteVerifier(name=origin, public_key=key) for key in auditor._connection.published_keys().audit]
    verified = verify_log(ServerSource(auditor), verifiers=verifiers, origin=origin)
    say("auditor", f"verified the whole log through the API: {verified.checkpoint.size} entries, root recomputed, "
                   f"checkpoint signed by the exchange's audit key")


def run_demo(*, console: Console, workdir: Path | None = None) -> int:
    """Play the demo; return the number of audit entries written."""
    with tempfile.TemporaryDirectory(prefix="exchange-demo-") as scratch:
        folder = workdir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        kept_secret = workdir is not None and MasterSecret.from_environment().present
        with _serving(folder, port, keep=workdir is not None) as (base, witnesses):
            console.print(f"[bold]Returnee Exchange demo[/] on {base} (SQLite and keys in {folder})")
            if kept_secret:
                console.print("keys sealed under EXCHANGE_MASTER_PASSPHRASE (or EXCHANGE_MASTER_KEY): the `exchange` "
                              "commands can open this folder afterwards")
            elif workdir is not None:
                console.print("[yellow]keys sealed under a one-time master key[/]: the database stays readable, the "
                              "key store does not (set EXCHANGE_MASTER_PASSPHRASE to keep it usable)")
            policy = WitnessPolicy.parse([w["vkey"] for w in witnesses], 2)
            for agency, witness in zip(WITNESS_AGENCIES, witnesses, strict=True):
                console.print(f"  {agency} runs its witness {witness['name']} on {witness['url']}")
            clients = _register_clients(f"sqlite:///{folder / 'exchange.db'}", base, workdir=folder,
                                        witnesses=policy)
            say_width = max(len(a) for a in COLOURS)

            def say(agency: str, text: str) -> None:
                console.print(f"[bold {COLOURS[agency]}]{agency:>{say_width}}[/]  {text}")

            say("security", "registered one client per agency (auth, sign and enc keys; scopes of its agency)")
            outcome = _story(clients, say)
            _witnessed(clients["auditor"], policy, say)
            for client in clients.values():
                client.close()
            table = Table(title="Where the story leaves them (interior's view)",
                          caption="status: the lifecycle in the register (a detained entry is arrived: in the "
                                  "country); the crossing's outcome is kept with the crossing")
            for column in ("register number", "name", "status", "identifications"):
                table.add_column(column)
            for returnee in outcome["returnees"]:
                table.add_row(returnee["register_number"], returnee["person_name"]["full"], returnee["status"],
                              ", ".join(i["id"] for i in returnee["identifications"]) or "-")
            console.print(table)
            count = _audit_size(folder, console)
    _next_steps(console, workdir, kept_secret)
    return count


def _next_steps(console: Console, workdir: Path | None, kept_secret: bool) -> None:
    console.print("[bold]Next:[/] run your own exchange (`exchange init && exchange demo-data && exchange serve`), "
                  "register a partner (`exchange clients keygen`, `exchange clients add`), call it by hand "
                  "(`exchange call`) or from a script (examples/).")
    if workdir is not None:
        env = f"EXCHANGE_DATABASE_URL=sqlite:///{workdir.resolve() / 'exchange.db'} EXCHANGE_KEYS_DIR=" \
              f"{workdir.resolve() / 'keys'}"
        what = "exchange audit tail" if kept_secret else "exchange audit verify --state DIR/state.json"
        console.print(f"This demo's log: {env} {what}")


def _audit_size(folder: Path, console: Console) -> int:
    from exchange.audit.models import AuditEntry

    engine = make_engine(f"sqlite:///{folder / 'exchange.db'}")
    with Session(engine) as session:
        count = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
        purposes = sorted({p for p in session.scalars(select(AuditEntry.purpose)) if p is not None})
    engine.dispose()
    console.print(f"[bold]audit log:[/] {count} entries written (every token, call and denial; purposes: "
                  f"{', '.join(p for p in purposes if p in set().union(*PURPOSES.values()))})")
    return count
