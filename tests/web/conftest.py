"""The browser the page tests drive: Debian's Chromium, headless, never a downloaded one."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

BROWSER_TESTS = [  # the marks of every browser test:
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None,
        reason="the browser tests need Debian's chromium at /usr/bin/chromium: apt-get install -y chromium "
        "(.ci/run installs it; no browser is ever downloaded)",
    ),
]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        await launched.close()


async def snap(page: Any, tmp_path: Path, name: str) -> None:
    """A screenshot; with TMS_SCREENSHOTS=docs it also replaces the README's (docs/<name>.png)."""
    await page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    if os.environ.get("TMS_SCREENSHOTS"):
        await page.screenshot(path=str(Path(os.environ["TMS_SCREENSHOTS"]) / f"{name}.png"), full_page=True)
