"""Fixtures for the console: a synthetic but realistic log, and a console loaded from it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from exchange.audit.entries import Event
from exchange.console.loader import Loader, Settings, export_source
from exchange.console.rules import RuleConfig
from exchange.console.store import Reviews
from exchange.console.web import create_console
from tests.console.builders import LogKey, leaves_of, write_export

MONDAY = datetime(2026, 3, 2, 9, tzinfo=UTC)  # a Monday, 09:00 UTC
PORT = 8999


def call(number: int, *, minutes: float, **fields: Any) -> Event:
    base: dict[str, Any] = dict(time=MONDAY + timedelta(minutes=minutes), request_id=f"{number:032x}",
                                action="consult", outcome="success", status=200, method="GET",
                                path="/v1/returnees/r1", agency="border", client_id="border-1",
                                officer="TJ-BORDER-001", purpose="border-screening", case_ref="CASE-1",
                                record_ids=("r1",), recipient="border", source_ip="10.0.0.1")
    base.update(fields)
    return Event(**base)


def sample_events() -> list[Event]:
    """A working day: routine consultations of nine returnees by the border, a prosecutor reading two returnees
    with a case reference, one read without one, an evening read, a burst of refusals, a key rotation, and a bulk
    read of 25 distinct returnees within 25 minutes by one client."""
    events: list[Event] = []
    for n in range(60):  # routine, every 5 minutes from 09:00 (index 0..59)
        events.append(call(len(events), minutes=5 * n, record_ids=(f"r{n % 9}",), path=f"/v1/returnees/r{n % 9}"))
    for n, record in enumerate(("r1", "r2")):  # index 60, 61
        events.append(call(len(events), minutes=301 + n, agency="prosecutor", client_id="pros-1",
                           officer="TJ-PROS-007", purpose="amnesty-review", case_ref="KR-2026-17",
                           record_ids=(record,), path=f"/v1/returnees/{record}", recipient="prosecutor",
                           action="disclose"))
    events.append(call(len(events), minutes=310, agency="prosecutor", client_id="pros-1", officer="TJ-PROS-007",
                       purpose="amnesty-review", case_ref=None, action="disclose", recipient="prosecutor"))  # 62
    events.append(call(len(events), minutes=12 * 60 + 5, record_ids=("r4",)))  # 63: 21:05, after hours
    for n in range(12):  # 64..75: refused calls from one address, 20 s apart
        events.append(call(len(events), minutes=400 + n / 3, action="deny", outcome="failure", status=403,
                           reason="not_permitted", client_id="border-2", source_ip="203.0.113.9", record_ids=(),
                           recipient=None, case_ref=None))
    events.append(call(len(events), minutes=420, action="key.rotate", agency="security", client_id=None,  # 76
                       officer="TJ-SEC-0001", purpose=None, case_ref=None, method="CLI", path="exchange keys rotate",
                       record_ids=("audit-2026-03",), recipient=None, source_ip=None))
    for n in range(25):  # 77..101: the bulk read
        events.append(call(len(events), minutes=480 + n, client_id="border-7", officer="TJ-BORDER-099",
                           record_ids=(f"bulk-{n}",), path=f"/v1/returnees/bulk-{n}", case_ref="CASE-9"))
    return events


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test item, so that a fixture can tell whether the test failed."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@dataclass
class Loaded:
    client: FlaskClient
    app: Flask
    loader: Loader
    export: Path
    key: LogKey
    state: Path

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, **kw)


@pytest.fixture
def log_key() -> LogKey:
    return LogKey()


@pytest.fixture
def export(tmp_path: Path, log_key: LogKey) -> Path:
    path = tmp_path / "audit.jsonl"
    write_export(path, leaves_of(sample_events()), log_key)
    return path


@pytest.fixture
def load(tmp_path: Path, log_key: LogKey) -> Callable[..., Loaded]:
    """Load an export into a console (synchronously) and return a test client addressed as its page would be."""
    runs = 0

    def run(path: Path, *, keys: tuple[str, ...] | None = None, witnesses: tuple[str, ...] = (),
            state: Path | None = None, rules: RuleConfig | None = None, start: bool = True) -> Loaded:
        nonlocal runs
        runs += 1
        keys = (log_key.vkey,) if keys is None else keys
        state = state or tmp_path / "state.json"
        settings = Settings(index_path=tmp_path / f"index-{runs}.sqlite", state_path=state, keys=keys,
                            witnesses=witnesses, rules=rules or RuleConfig())
        loader = Loader(settings, export_source(path, keys))
        if start:
            loader.run()
        app = create_console(loader, Reviews(tmp_path / "reviews.sqlite"), port=PORT)
        app.config["SERVER_NAME"] = f"127.0.0.1:{PORT}"  # the test client addresses the console as its page does
        client = app.test_client()
        return Loaded(client=client, app=app, loader=loader, export=path, key=log_key, state=state)

    return run
