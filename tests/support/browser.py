"""A real headless Chromium (Debian's ``chromium``, driven by Playwright) opening a report page.

``open_page`` loads a local file and records what a person's browser would show going wrong:
console errors, uncaught exceptions, and every request the page makes (a self-contained page
makes none beyond its own file). ``PVS_CHROMIUM`` names another Chromium or Chrome binary.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

FIX = "install it (scripts/services.sh does: apt-get install chromium) or set PVS_CHROMIUM to a Chromium binary"


def chromium() -> str:
    """The browser binary, or an AssertionError that says how to get one (never a skip)."""
    found = os.environ.get("PVS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, f"no Chromium on this machine, so the report cannot be checked in a browser; {FIX}"
    return found


@dataclass
class Opened:
    page: object  # playwright's Page
    url: str
    load_seconds: float
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def foreign_requests(self) -> list[str]:
        """Requests for anything but the page itself."""
        return [url for url in self.requests if url != self.url]


@contextlib.contextmanager
def open_page(path: Path, timeout_s: float = 60) -> Iterator[Opened]:
    """Open ``path`` in headless Chromium and wait until the report says it has drawn its plots
    (``<body data-ready="1">``)."""
    from playwright.sync_api import sync_playwright

    url = path.resolve().as_uri()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            opened = Opened(page, url, 0.0)
            page.on("console", lambda m: opened.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: opened.page_errors.append(str(e)))
            page.on("request", lambda r: opened.requests.append(r.url))
            started = time.monotonic()
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", state="attached", timeout=timeout_s * 1000)
            opened.load_seconds = time.monotonic() - started
            yield opened
        finally:
            browser.close()


def plot_trace_counts(page, selector: str) -> list[int]:
    """How many drawn traces each plot element under ``selector`` holds (0: empty or not drawn)."""
    return page.eval_on_selector_all(
        selector, "els => els.map(e => e.querySelectorAll('.main-svg .trace, .main-svg .bars .point').length)"
    )


def screenshot_colours(page, path: Path) -> int:
    """Take a full-page screenshot into ``path``; returns how many distinct colours it has."""
    from PIL import Image

    page.screenshot(path=str(path), full_page=True)
    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    return len(colours) if colours is not None else 1 << 20
