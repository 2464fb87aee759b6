"""Checkpoints by the service itself, and their submission to the witnesses (witness.md §1, §3), off the request path.

Each worker process runs one background thread (`Checkpointer.run`), started with its first request. Every half
`AUDIT_CHECKPOINT_SECONDS` it:

1. takes or renews the signer's lease, a single row in the database (`audit_signer`: holder, until). A worker that
   finds the lease held by another and not lapsed does nothing else: exactly one worker, of however many processes
   and machines share the database, signs and submits at a time. The lease lasts `AUDIT_CHECKPOINT_SECONDS`; if its
   holder dies, another worker takes it over within that time.
2. as the lease holder: signs a new checkpoint (`AuditLog.checkpoint`: sequences what is queued under the head lock,
   signs if the log grew) once the latest is half the interval old, so that while entries arrive a new checkpoint
   follows the last one within the interval;
3. wakes one submitter thread per witness of `EXCHANGE_WITNESSES`, which posts the latest checkpoint with the
   consistency proof from the size that witness last cosigned (`tlog-witness` add-checkpoint), with a timeout,
   verifies the cosignature with the witness's configured key and stores it. A witness that is slow, down or
   refusing delays nothing but its own cosignature: calls never wait for this thread, nor for a witness.

A checkpoint is served (`AuditLog.published`) with the cosignatures collected for it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
from flask import Flask
from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from exchange.audit.models import AuditCheckpoint, AuditSigner
from exchange.audit.services import AuditLog, Signer
from exchange.db import utcnow
from exchange.protocol.audit_errors import AuditUnavailable, VerificationError
from exchange.protocol.checkpoint import SIGNATURE_PREFIX
from exchange.protocol.cosignature import CosignerKey, split_note
from exchange.protocol.witness import (
    ADD_CHECKPOINT_PATH,
    AddCheckpoint,
    WitnessRequestError,
    parse_cosignature_body,
    parse_size_body,
)

log = logging.getLogger("exchange.audit.witnessing")


@dataclass(frozen=True, kw_only=True)
class WitnessConfig:
    """One witness the exchange submits to: its name, its submission URL prefix and its cosigner key."""

    name: str
    url: str
    key: CosignerKey


def parse_witnesses(raw: str | None) -> list[WitnessConfig]:
    """`EXCHANGE_WITNESSES`: a JSON array of `{"name", "url", "vkey"}` (vkey: the witness's C2SP verifier key, type
    0x04, as `exchange witness status` prints it; its name must be `name`)."""
    if not raw or not raw.strip():
        return []
    try:
        items = json.loads(raw)
        if not isinstance(items, list):
            raise ValueError("not a JSON array")
        found = []
        for item in items:
            key = CosignerKey.from_vkey(item["vkey"])
            name = item.get("name", key.name)
            if name != key.name:
                raise ValueError(f"the witness {name!r} has a key named {key.name!r}")
            url = str(item["url"]).rstrip("/")
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"the witness {name!r} has no http(s) URL")
            found.append(WitnessConfig(name=name, url=url, key=key))
    except (ValueError, KeyError, TypeError, VerificationError) as e:
        raise RuntimeError(f"EXCHANGE_WITNESSES is not a JSON array of {{name, url, vkey}}: {e}") from e
    if len({w.name for w in found}) != len(found):
        raise RuntimeError("EXCHANGE_WITNESSES names a witness twice")
    return found


@dataclass(kw_only=True)
class Checkpointer:
    """The background signer of one worker. `tick(now)` is one round (tests drive it with their own clock)."""

    sessions: sessionmaker[Session]
    signer: Callable[[], Signer]
    origin: str
    interval: float
    witnesses: Sequence[WitnessConfig] = ()
    timeout: float = 2.0
    holder: str = field(default_factory=lambda: f"{os.getpid()}-{uuid.uuid4().hex[:12]}")
    transport: httpx.BaseTransport | None = None  # tests: an in-process witness
    leader: bool = False
    _known: dict[str, int] = field(default_factory=dict)  # the size each witness last told us it has

    # ---- 1. the lease ------------------------------------------------------------------------------------------------

    def take_lease(self, session: Session, now: datetime) -> bool:
        """Take or renew the signer's lease (committed); whether this worker holds it now."""
        until = now + timedelta(seconds=self.interval)
        insert_ = sqlite_insert if session.get_bind().dialect.name == "sqlite" else postgresql_insert
        session.execute(insert_(AuditSigner).values(id=1, holder=self.holder, until=now)
                        .on_conflict_do_nothing(index_elements=[AuditSigner.id]))
        result = session.execute(
            update(AuditSigner).where(AuditSigner.id == 1,
                                      or_(AuditSigner.holder == self.holder, AuditSigner.until <= now))
            .values(holder=self.holder, until=until)
        )
        taken = cast(CursorResult[Any], result).rowcount
        session.commit()
        return bool(taken)

    # ---- 2. signing --------------------------------------------------------------------------------------------------

    def due(self, session: Session, now: datetime) -> bool:
        created = session.scalar(select(AuditCheckpoint.created_at).order_by(AuditCheckpoint.size.desc()).limit(1))
        return created is None or (now - created).total_seconds() >= self.interval / 2

    def tick(self, now: datetime | None = None) -> AuditCheckpoint | None:
        """One round: the lease, then (as its holder) a new checkpoint if one is due and the log grew. Returns the
        checkpoint signed this round, if any."""
        now = now or utcnow()
        with self.sessions() as session:
            try:
                self.leader = self.take_lease(session, now)
                if not self.leader or not self.due(session, now):
                    return None
                audit_log = AuditLog(session=session)
                before = audit_log.latest_checkpoint()
                row = audit_log.checkpoint(signer=self.signer(), origin=self.origin, now=now)
                session.commit()
            except (SQLAlchemyError, AuditUnavailable) as e:
                session.rollback()
                log.warning("checkpoint round failed", extra={"exception_type": type(e).__name__})
                return None
        return row if before is None or row.size != before.size else None

    # ---- 3. witnesses ------------------------------------------------------------------------------------------------

    def submit(self, witness: WitnessConfig, http: httpx.Client) -> str | None:
        """Bring `witness` up to the latest checkpoint; return its stored cosignature line, or None."""
        with self.sessions() as session:
            audit_log = AuditLog(session=session)
            latest = audit_log.latest_checkpoint()
            if latest is None or latest.size == 0:
                return None
            lines = [line for line in audit_log.cosignature_lines(latest.size)
                     if line.startswith(f"{SIGNATURE_PREFIX}{witness.name} ")]
            if lines:
                return lines[0]
            old = self._known.get(witness.name)
            if old is None:
                old = audit_log.witnessed_size(witness.name)
            for _ in range(2):  # once more after a 409 told us the witness's size
                if old > latest.size:
                    log.error("a witness has cosigned a larger tree than this log's latest checkpoint",
                              extra={"witness": witness.name, "size": old})
                    return None
                proof = audit_log.consistency_proof(old, latest.size).hashes if old else ()
                session.rollback()  # hold no transaction while waiting on the network
                body = AddCheckpoint(old_size=old, proof=proof, checkpoint=latest.note).to_bytes()
                response = http.post(witness.url + ADD_CHECKPOINT_PATH, content=body,
                                     headers={"Content-Type": "text/plain; charset=utf-8"})
                if response.status_code == 409 and response.headers.get("content-type", "").startswith(
                        "text/x.tlog.size"):
                    old = parse_size_body(response.content)
                    self._known[witness.name] = old
                    continue
                if response.status_code != 200:
                    log.warning("a witness refused the checkpoint",
                                extra={"witness": witness.name, "status": response.status_code})
                    return None
                text, _ = split_note(latest.note)
                for line in parse_cosignature_body(response.content):
                    name, _, encoded = line[len(SIGNATURE_PREFIX):].rstrip("\n").partition(" ")
                    if name != witness.name:
                        continue
                    try:
                        cosignature = witness.key.verify(text, base64.b64decode(encoded, validate=True))
                    except (VerificationError, ValueError):
                        continue  # not the key we trust for this witness: ignored (C2SP)
                    audit_log.add_cosignature(size=latest.size, witness=witness.name, line=cosignature.line,
                                              cosigned_at=cosignature.timestamp)
                    session.commit()
                    self._known[witness.name] = latest.size
                    return cosignature.line
                log.warning("a witness answered without a valid cosignature", extra={"witness": witness.name})
                return None
        return None

    def submit_quietly(self, witness: WitnessConfig, http: httpx.Client) -> None:
        try:
            self.submit(witness, http)
        except (httpx.HTTPError, WitnessRequestError, SQLAlchemyError, AuditUnavailable, ValueError) as e:
            log.warning("witness submission failed", extra={"witness": witness.name,
                                                            "exception_type": type(e).__name__})

    # ---- the threads -------------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Tick every half interval until `stop`; one submitter thread per witness, woken after each tick."""
        wake = [threading.Event() for _ in self.witnesses]
        submitters = [threading.Thread(target=self._submitter, args=(witness, event, stop), daemon=True,
                                       name=f"exchange-witness-{witness.name}")
                      for witness, event in zip(self.witnesses, wake, strict=True)]
        for thread in submitters:
            thread.start()
        while not stop.is_set():
            try:
                self.tick()
            except Exception as e:  # never let the thread die: the next round tries again
                log.error("checkpointer round failed", extra={"exception_type": type(e).__name__})
            if self.leader:
                for event in wake:
                    event.set()
            stop.wait(max(self.interval / 2, 0.05))
        for event in wake:  # let the submitters see `stop`, and end with them
            event.set()
        for thread in submitters:
            thread.join()

    def _submitter(self, witness: WitnessConfig, wake: threading.Event, stop: threading.Event) -> None:
        with httpx.Client(timeout=self.timeout, transport=self.transport) as http:
            while not stop.is_set():
                wake.wait()
                wake.clear()
                if self.leader and not stop.is_set():
                    self.submit_quietly(witness, http)


def install_checkpointer(app: Flask) -> None:
    """Start the worker's checkpointer thread with its first request (after a fork: gunicorn's workers each start
    their own), unless `AUDIT_BACKGROUND` is off (tests drive `Checkpointer.tick` themselves)."""
    witnesses = parse_witnesses(app.config.get("WITNESSES"))
    app.config["AUDIT_WITNESSES"] = witnesses
    if app.config.get("AUDIT_SERVE_COSIGNATURES") is None:
        app.config["AUDIT_SERVE_COSIGNATURES"] = len(witnesses) // 2 + 1 if witnesses else 0
    if not app.config.get("AUDIT_BACKGROUND", True) or app.config["AUDIT_CHECKPOINT_SECONDS"] <= 0:
        return
    started: dict[int, threading.Event] = {}
    lock = threading.Lock()

    @app.before_request
    def _start_checkpointer() -> None:
        pid = os.getpid()
        if pid in started:
            return
        with lock:
            if pid in started:
                return
            stop = started[pid] = threading.Event()
            app.extensions["exchange.checkpointer.stop"] = stop
            checkpointer = make_checkpointer(app)
            app.extensions["exchange.checkpointer"] = checkpointer
            thread = threading.Thread(target=checkpointer.run, args=(stop,), daemon=True,
                                      name="exchange-checkpointer")
            app.extensions["exchange.checkpointer.thread"] = thread
            thread.start()


def make_checkpointer(app: Flask, **overrides: object) -> Checkpointer:
    from exchange.audit import recorder

    options: dict[str, object] = {
        "sessions": app.extensions["exchange.sessionmaker"], "signer": lambda: recorder.signer(app),
        "origin": recorder.origin(app), "interval": float(app.config["AUDIT_CHECKPOINT_SECONDS"]),
        "witnesses": app.config.get("AUDIT_WITNESSES", ()), "timeout": float(app.config.get("WITNESS_TIMEOUT", 2.0)),
    }
    options.update(overrides)
    return Checkpointer(**options)  # type: ignore[arg-type]


def wait_for(predicate: Callable[[], bool], *, timeout: float = 10.0, step: float = 0.05) -> bool:
    """Poll `predicate` until it holds or `timeout` passes (the demo and tools; never a test assertion on time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
