"""`/docs` works on a closed network: a real browser loads it from a real server with every outside request blocked.

Chromium is the system's (Debian's `chromium`, installed by `.ci/run`); Playwright only drives it and never downloads
a browser.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask

from exchange.db import make_engine
from exchange.keys.master import new_master_key
from exchange.keys.ring import provision
from exchange.web.docs import SWAGGER_UI_DIR, SWAGGER_UI_URL
from tests.server import gunicorn

CHROMIUM = Path("/usr/bin/chromium")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def test_the_swagger_ui_is_served_from_the_package(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/docs").get_data(as_text=True)
    assert "cdn" not in page.lower() and "https://" not in page
    for name in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        assert f'"{SWAGGER_UI_URL}{name}"' in page
        with client.get(f"{SWAGGER_UI_URL}{name}") as response:
            assert response.status_code == 200
            assert response.get_data() == (SWAGGER_UI_DIR / name).read_bytes()
    assert '"validatorUrl": null' in page  # the UI never sends the document to the public validator
    assert (SWAGGER_UI_DIR / "LICENSE").exists() and (SWAGGER_UI_DIR / "NOTICE").exists()


@pytest.fixture
def live_server(database_url: str, tmp_path: Path, make_app: Any) -> Iterator[str]:
    """The exchange under gunicorn (`make_app` only for its teardown, which empties the tables afterwards)."""
    keys_dir, master_key = tmp_path / "keys", new_master_key()
    engine = make_engine(database_url)
    provision(keys_dir, engine, master_key=master_key)
    engine.dispose()
    with gunicorn(database_url=database_url, keys_dir=keys_dir, master_key=master_key, workers=1,
                  log=tmp_path / "gunicorn.log") as base:
        yield base


@pytest.mark.server
@pytest.mark.skipif(not CHROMIUM.exists(), reason="no system chromium at /usr/bin/chromium (.ci/run installs it)")
def test_docs_lists_the_operations_in_a_browser_with_the_internet_blocked(live_server: str) -> None:
    from playwright.sync_api import Route, sync_playwright

    blocked: list[str] = []
    failed: list[str] = []

    def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page()
            page.route("**/*", only_loopback)
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.goto(f"{live_server}/docs", wait_until="load")
            page.wait_for_selector(".opblock-summary-path", timeout=30_000)
            paths = set(page.locator(".opblock-summary-path").all_inner_texts())
            title = page.locator(".info .title").inner_text()
        finally:
            browser.close()
    assert "Returnee Exchange" in title
    assert {"/v1/returnees", "/v1/screening", "/oauth/token", "/.well-known/jwks.json"} <= {
        p.replace("\u200b", "").strip() for p in paths}
    assert blocked == []  # nothing on the page reached for the internet
    assert failed == []
