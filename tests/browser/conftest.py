"""A real Chromium (Debian's, never a Playwright download) on the demo dashboard.

The demo is prepared on a slice of the year (the flights before :data:`CUTOFF`), served by a
real ``facta serve --project`` on 127.0.0.1. Every page request to another host is refused and
recorded, and a test that caused one fails. Screenshots go to ``artifacts/browser/``
(``FACTA_TEST_ARTIFACTS`` to move it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright

from facta.demo import TABLES, prepare
from facta.server.tokens import create_token
from tests.server.server_process import RunningServer, facta_serve

CHROMIUM = Path("/usr/bin/chromium")
CUTOFF = "2013-01-15"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class Demo:
    server: RunningServer
    project: Path
    admin: str
    reader: str


@dataclass
class ForeignRequests:
    """Requests the page tried to make to a host other than 127.0.0.1 (each was aborted)."""

    urls: list[str] = field(default_factory=list)

    def guard(self, route: Route) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
            return
        self.urls.append(url)
        route.abort("blockedbyclient")


@pytest.fixture(scope="session")
def artefacts() -> Path:
    folder = Path(os.environ.get("FACTA_TEST_ARTIFACTS", "artifacts")) / "browser"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    folder = tmp_path_factory.mktemp("demo")
    # In a thread of its own: Playwright's sync API keeps an event loop running on this one,
    # and the importer starts its own.
    with ThreadPoolExecutor(1) as pool:
        _, project, _ = pool.submit(
            prepare, folder, CUTOFF, progress=False, tables=TABLES[:2]
        ).result()
    admin = create_token("admin", ["admin"])
    reader = create_token("reader", ["read"])
    args = ["--project", str(project), "--sse-heartbeat", "1", "--max-live-queries-per-token", "64"]
    with facta_serve(folder, [admin.line, reader.line], args) as server:
        yield Demo(server, project, admin.token, reader.token)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope: Playwright's sync API runs an event loop on the main thread while it is
    # open, and tests elsewhere call asyncio.run.
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def foreign() -> ForeignRequests:
    return ForeignRequests()


@pytest.fixture
def context(browser: Browser, foreign: ForeignRequests) -> Iterator[BrowserContext]:
    opened = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened.route("**/*", foreign.guard)
    yield opened
    opened.close()
    assert foreign.urls == [], f"the page asked hosts other than 127.0.0.1: {foreign.urls}"


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    opened = context.new_page()
    errors: list[Any] = []
    opened.on("pageerror", lambda error: errors.append(error))
    yield opened
    assert errors == [], f"script errors on the page: {errors}"


def open_dashboard(page: Page, demo_server: Demo, token: str) -> int:
    """Sign in through the address fragment and wait until every panel of the dashboard (as
    ``GET /dashboards`` lists it) has drawn; return how many there are."""
    with demo_server.server.client(demo_server.reader) as client:
        (dashboard,) = client.get("/dashboards").json()["dashboards"]
    panels = len(dashboard["panels"])
    page.goto(f"{demo_server.server.url}/#token={token}")
    page.wait_for_function(
        "n => window.__facta.ready && Object.keys(window.__facta.panels).length === n",
        arg=panels,
        timeout=30_000,
    )
    return panels
