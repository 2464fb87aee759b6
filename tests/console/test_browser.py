"""The console as an auditor uses it, in headless Chromium (Debian's, never a downloaded one) driven by Playwright.

The log is the demo's: the three agencies' story over real HTTP, then a seeded bulk read (one border client
consulting 25 returnees within 25 minutes) appended through the audit service, and an export signed with a checkpoint
key of the test's own. Every request the page makes to anything but 127.0.0.1 is blocked and counted: there must be
none. A failing test leaves a screenshot in its tmp dir.
"""

from __future__ import annotations

import io
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import nacl.signing
import pytest
from rich.console import Console
from sqlalchemy.orm import Session

from exchange.audit.entries import Event
from exchange.audit.services import AuditLog, StoredEntry, export_lines
from exchange.audit.verify import LogSource
from exchange.console.cli import serve
from exchange.console.loader import Loader, Settings, export_source
from exchange.console.store import Reviews
from exchange.db import make_engine
from exchange.demo import run_demo
from exchange.protocol.checkpoint import NoteVerifier
from exchange.protocol.encoding import b64url, b64url_decode
from tests.console.builders import LogKey, leaves_of, write_export
from tests.console.conftest import call

CHROMIUM = Path("/usr/bin/chromium")
ORIGIN = "exchange.local/audit"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="the browser test drives Debian's chromium at /usr/bin/chromium, "
                                                     "which is not installed here"),
]


class Signer:
    def __init__(self) -> None:
        self.key = nacl.signing.SigningKey(b"\x11" * 32)

    @property
    def public_bytes(self) -> bytes:
        return bytes(self.key.verify_key)

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message).signature


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The demo's log plus a seeded bulk read, exported with a checkpoint; returns the file and the key."""
    folder = tmp_path_factory.mktemp("demo")
    run_demo(console=Console(file=io.StringIO()), workdir=folder / "exchange")
    engine = make_engine(f"sqlite:///{folder / 'exchange' / 'exchange.db'}")
    signer = Signer()
    start = datetime.now(UTC) + timedelta(minutes=5)
    bulk = [Event(time=start + timedelta(minutes=n), request_id=uuid.uuid4().hex, action="consult",
                  outcome="success", status=200, method="GET", path=f"/v1/returnees/{rid}", agency="border",
                  client_id="demo-border", officer="TJ-BORDER-001", purpose="border-screening", case_ref="BS-77",
                  record_ids=(rid,), recipient="border", source_ip="127.0.0.1")
            for n, rid in enumerate(str(uuid.uuid4()) for _ in range(25))]
    path = folder / "audit.jsonl"
    with Session(engine) as session:
        log = AuditLog(session=session)
        log.append(bulk)
        checkpoint = log.checkpoint(signer=signer, origin=ORIGIN)
        session.commit()
        with path.open("w", encoding="utf-8") as f:
            for line in export_lines(log, note=checkpoint.note, start=0, end=checkpoint.size):
                f.write(line)
    engine.dispose()
    return path, NoteVerifier(name=ORIGIN, public_key=signer.public_bytes).vkey


class Gate:
    """Holds the load at entry `at` until opened: the page is looked at mid-load."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.opened = threading.Event()

    def around(self, make: Callable[[], tuple[LogSource, list[NoteVerifier], str]]
               ) -> Callable[[], tuple[LogSource, list[NoteVerifier], str]]:
        def gated() -> tuple[LogSource, list[NoteVerifier], str]:
            source, verifiers, origin = make()
            inner = source.entries

            def entries(end: int) -> Iterator[StoredEntry]:
                for entry in inner(end):
                    if entry.index == self.at:
                        self.opened.wait(60)
                    yield entry

            source.entries = entries  # type: ignore[method-assign]
            return source, verifiers, origin
        return gated


@contextmanager
def console(export: Path, key: str, tmp_path: Path, *, gate: Gate | None = None) -> Iterator[str]:
    settings = Settings(index_path=tmp_path / "index.sqlite", state_path=tmp_path / "state.json", keys=(key,))
    make_source = export_source(export, (key,))
    if gate is not None:
        make_source = gate.around(make_source)
    server = serve(Loader(settings, make_source), Reviews(tmp_path / "reviews.sqlite"), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def browser_page(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(accept_downloads=True)

        def guard(route: Any) -> None:
            if urlparse(route.request.url).hostname == "127.0.0.1":
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", guard)
        page = context.new_page()
        page.set_default_timeout(60_000)
        yield page
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:  # kept in the test's tmp dir
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        context.close()
        browser.close()
    assert blocked == [], "the page asked for something other than 127.0.0.1"


def test_an_auditor_reviews_the_demo_log(browser_page: Any, demo_export: tuple[Path, str], tmp_path: Path) -> None:
    page = browser_page
    export, key = demo_export
    with console(export, key, tmp_path) as base:
        page.goto(base + "/")
        # the badge: verified, up to which checkpoint, when
        page.wait_for_selector("#badge[data-ok]")
        badge = page.locator("#badge")
        assert badge.get_attribute("data-ok") == "true", badge.inner_text()
        size = int(export.read_text(encoding="utf-8").count("\n")) - 1
        assert f"VERIFIED: {size:,} entries of {ORIGIN}, up to the checkpoint of size {size}" in badge.inner_text()
        assert "Cosignatures: no witness cosignatures carried" in badge.inner_text()
        # search: the prosecutor's calls
        page.fill("input[name=agency]", "prosecutor")
        page.click("#search-form button[type=submit]")
        page.wait_for_selector("#results table.entries tbody tr")
        agencies = page.locator("#results table.entries tbody tr td:nth-child(6)").all_inner_texts()
        assert agencies and set(agencies) == {"prosecutor"}
        # a returnee's history: follow the returnee's id in a prosecutor's decision (the decision's own id first)
        page.fill("input[name=action]", "collect")
        page.click("#search-form button[type=submit]")
        page.wait_for_selector("#results table.entries tbody tr td a[href^='#history/']")
        record = page.locator("#results tbody tr").first.locator("a[href^='#history/']").last
        record_id = record.inner_text()
        record.click()
        page.wait_for_selector("h2:has-text('Access history of')")
        page.wait_for_selector("table.entries tbody tr")
        rows = page.locator("table.entries tbody tr")
        assert rows.count() >= 3  # registered and vetted by interior, decided on by the prosecutor, ...
        assert "prosecutor" in page.locator("table.entries").inner_text()
        # the court report for this returnee downloads, with the proofs and the signed checkpoint
        with page.expect_download() as download:
            page.click("#download-report")
        report = Path(download.value.path()).read_text(encoding="utf-8")
        assert f"Access history of record {record_id}" in report and "inclusion proof" in report
        evidence = json.loads(report.split('id="evidence">', 1)[1].split("</script>", 1)[0])
        assert evidence["key"] == key and evidence["entries"]
        assert all(record_id in json.loads(e["leaf"])["record_ids"] for e in evidence["entries"])
        # a chart
        page.click("nav a[href='#charts']")
        page.wait_for_selector("figure[data-chart=agency_day] svg rect")
        assert page.locator("figure[data-chart=heat] svg rect").count() == 7 * 24
        # the flag the seeded bulk read raised, linked to its entries, marked reviewed
        page.click("nav a[href='#flags']")
        flag = page.locator(".flag[data-rule=bulk]")
        flag.wait_for()
        assert flag.count() == 1 and "demo-border" in flag.inner_text()
        text = flag.inner_text()
        calls = int(re.search(r"\((\d+) calls\)", text)[1])  # type: ignore[index]
        assert calls >= 25 and "20 distinct records within 60 minutes" in text  # 25 seeded, + the demo's own reads
        flag.locator("input[name=note]").fill("seeded in the test; checked with the border's duty officer")
        flag.locator("button[type=submit]").click()
        page.wait_for_selector(".flag.reviewed[data-rule=bulk]")
        page.locator(".flag[data-rule=bulk] a:has-text('entries')").click()
        page.wait_for_selector("table.entries tbody tr")
        assert page.locator("table.entries tbody tr").count() == calls
        assert page.locator(".reviewed-note").inner_text().endswith("checked with the border's duty officer")


def test_the_progress_bar_moves_while_a_large_export_loads(browser_page: Any, tmp_path: Path) -> None:
    key = LogKey()
    export = tmp_path / "large.jsonl"
    write_export(export, leaves_of([call(n, minutes=n / 10) for n in range(10_000)]), key)
    gate = Gate(at=6_000)  # the page is read while the loader waits there: progress was last reported at 4,096
    page = browser_page
    with console(export, key.vkey, tmp_path, gate=gate) as base:
        try:
            page.goto(base + "/")
            page.wait_for_function("() => document.getElementById('load-progress').value > 0")
            bar = page.locator("#load-progress")
            assert bar.evaluate("b => [b.value, b.max]") == [4096, 10_000]
            assert page.locator("#load-phase").inner_text() == "verifying"
            assert "4,096 / 10,000 entries" in page.locator("#load-count").inner_text()
            assert page.locator("#badge[data-ok]").count() == 0
        finally:
            gate.opened.set()
        page.wait_for_selector("#badge[data-ok]")
        assert page.locator("#badge").get_attribute("data-ok") == "true"
        assert bar.evaluate("b => [b.value, b.max]") == [10_000, 10_000]


def test_a_tampered_export_shows_a_failed_badge_naming_the_first_bad_index(
    browser_page: Any, demo_export: tuple[Path, str], tmp_path: Path
) -> None:
    export, key = demo_export
    lines = export.read_text(encoding="utf-8").splitlines(keepends=True)
    line = json.loads(lines[13])  # entry 12
    leaf = b64url_decode(line["leaf"])
    line["leaf"] = b64url(leaf.replace(b'"status":', b'"status":1', 1))
    lines[13] = json.dumps(line, separators=(",", ":")) + "\n"
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("".join(lines), encoding="utf-8")
    page = browser_page
    with console(tampered, key, tmp_path) as base:
        page.goto(base + "/")
        page.wait_for_selector("#badge[data-ok]")
        badge = page.locator("#badge")
        assert badge.get_attribute("data-ok") == "false"
        assert badge.get_attribute("data-first-bad-index") == "12"
        assert "NOT VERIFIED: first bad index 12" in badge.inner_text()
