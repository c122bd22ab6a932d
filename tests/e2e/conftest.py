"""Browser tests: Playwright drives Debian's Chromium against pytest-django's live server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, missing_service

CHROMIUM = os.environ.get("CARTWATCH_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
#: Where README pictures are copied: only `make screenshots` sets it, so that a test run never rewrites tracked files.
SCREENSHOTS = os.environ.get("CARTWATCH_SCREENSHOTS_DIR")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(autouse=True)
def _live(transactional_db):
    """A live-server test reads committed data: a transactional database (flushed afterwards, seeds put back)."""


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        missing_service(f"no Chromium at {CHROMIUM}: install Debian's (apt-get install chromium) to run browser tests")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on the test thread; the ORM calls the tests make there are still
    # ordinary synchronous calls.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1360, "height": 900}, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def sign_in(live_server):
    def sign(page, username: str, password: str = "correct-horse-battery") -> None:
        page.goto(f"{live_server.url}/admin/login/?next=/admin/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/")

    return sign


def screenshot(page, name: str, *, readme: bool = False, full_page: bool = True, target=None) -> Path:
    """The page (or the ``target`` locator) into test-artifacts/ (git-ignored); under `make screenshots`, README
    pictures are also copied to docs/screenshots/."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if target is not None:
        target.screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=full_page)
    if readme and SCREENSHOTS:
        folder = REPO / SCREENSHOTS
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / path.name)
    return path
