"""A headless Chromium for tests: Debian's own, driven by Playwright, with what the page says kept."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Page, Request, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# Playwright's own browser download cannot work here; these flags also keep Chromium off the network.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@dataclass
class PageLog:
    """What a page did besides drawing: console errors, uncaught exceptions, requests elsewhere."""

    origin: str
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def on_request(self, request: Request) -> None:
        if not request.url.startswith((self.origin + "/", "data:")):
            self.elsewhere.append(request.url)


@contextmanager
def chromium_page(origin: str, width: int = 1280, height: int = 900) -> Iterator[tuple[Page, PageLog]]:
    """A fresh page in headless Chromium, and the log of what it does."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's browser (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, locale="pt-BR")
            log = PageLog(origin)
            page.on("console", log.on_console)
            page.on("pageerror", lambda error: log.exceptions.append(str(error)))
            page.on("request", log.on_request)
            yield page, log
        finally:
            browser.close()
