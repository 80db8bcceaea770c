"""Headless Chromium for the console's tests: the distribution's browser (`/usr/bin/chromium`,
installed by `make browser`, which `make test` runs) driven by Playwright, never a browser
Playwright downloads. Tests skip, naming why, where there is none."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

BROWSER_VARIABLE = "JINLIAN_CHROMIUM"


def chromium_path() -> Path | None:
    configured = os.environ.get(BROWSER_VARIABLE)
    if configured:
        return Path(configured)
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def require_browser() -> Path:
    path = chromium_path()
    if path is None or not path.exists():
        pytest.skip("no Chromium: `make browser` installs Debian's chromium (as root), or set "
                    f"{BROWSER_VARIABLE}")  # fmt: skip
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    return path


@asynccontextmanager
async def browser_page() -> AsyncIterator[object]:
    """A fresh page of a headless Chromium; page errors fail the test at the end."""
    from playwright.async_api import async_playwright

    executable = require_browser()
    errors: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(executable), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.set_default_timeout(10_000)
            yield page
        finally:
            await browser.close()
    assert not errors, errors
