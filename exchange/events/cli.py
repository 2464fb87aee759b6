"""`exchange deliver`: the webhook delivery worker (events.md "Pushing"), and retention of the outbox."""

from __future__ import annotations

import time
from collections.abc import Mapping

import click
import httpx
from flask import current_app
from flask.cli import with_appcontext

from exchange.db import db, rollback_quietly
from exchange.events.services import EventLog
from exchange.events.webhooks import Deliverer, EnvelopeSigner, Poster
from exchange.keys.ring import key_ring

TIMEOUT_SECONDS = 10.0


def http_post(client: httpx.Client) -> Poster:
    def post(url: str, body: bytes, headers: Mapping[str, str]) -> int:
        return client.post(url, content=body, headers=dict(headers)).status_code

    return post


@click.command("deliver")
@click.option("--once", is_flag=True, help="One pass (enqueue, deliver what is due, prune), then exit.")
@click.option("--interval", default=1.0, show_default=True, type=float, help="Seconds between passes.")
@with_appcontext
def deliver_command(once: bool, interval: float) -> None:
    """Push events to the registered webhooks, signed and sealed, with retries; prune events past retention."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def signer() -> EnvelopeSigner:
        return key_ring(app).active("envelope-sign")

    with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client:
        while True:
            session = db.session
            try:
                result = Deliverer(session=session, signer=signer, post=http_post(client)).run_once()
                pruned = EventLog(session=session, retention_days=app.config["EVENT_RETENTION_DAYS"]).prune()
                session.commit()
            except Exception:
                rollback_quietly(session)
                raise
            if once or result.delivered or result.retried or result.dead or pruned:
                click.echo(f"enqueued {result.enqueued}, delivered {result.delivered}, retried {result.retried}, "
                           f"dead {result.dead}, pruned {pruned}")
            if once:
                return
            time.sleep(interval)
