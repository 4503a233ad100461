"""A real browser for the page tests and the screenshots: headless Chromium driven over the W3C
WebDriver protocol (Debian's `chromium` and `chromium-driver`).

The protocol is a handful of JSON requests to chromedriver; httpx (already a dependency) sends
them, so no WebDriver library is needed for the five calls used here.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
from tools import require

WIDTH, HEIGHT = 1280, 900


def chromium() -> str:
    """The browser binary: Debian's `chromium` (or a `chromium-browser`/`google-chrome`)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return require("chromium")


class Browser:
    """One WebDriver session: load a page, run a script in it, take a screenshot."""

    def __init__(self, client: httpx.Client, session: str):
        self.client = client
        self.session = session

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.client.request(method, f"/session/{self.session}{path}", json=body)
        data = response.json()
        if response.status_code != 200:
            raise AssertionError(f"webdriver {method} {path}: {data.get('value', data)}")
        return data["value"]

    def load(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def run(self, script: str, *args: Any) -> Any:
        """The value of `script` (a function body: `return ...`) in the page."""
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def resize(self, width: int, height: int) -> None:
        self._call("POST", "/window/rect", {"width": width, "height": height})

    def screenshot(self, whole_page: bool = False) -> bytes:
        """A PNG of the window; `whole_page` first grows the window to the page's height."""
        if whole_page:
            height = self.run("return document.documentElement.scrollHeight")
            self.resize(WIDTH, min(int(height) + 150, 16_000))
        png = base64.b64decode(self._call("GET", "/screenshot"))
        if whole_page:
            self.resize(WIDTH, HEIGHT)
        return png


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def headless_chromium() -> Iterator[Browser]:
    """A headless Chromium window 1280 px wide, closed afterwards."""
    driver = require("chromedriver")
    binary = chromium()
    port = _free_port()
    process = subprocess.Popen(
        [driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if client.get("/status").json()["value"]["ready"]:
                        break
                except httpx.TransportError:  # not listening yet
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError("chromedriver did not start")
                time.sleep(0.1)
            options = {
                "binary": binary,
                # --no-sandbox: the tests run as root in CI, where Chromium's sandbox refuses to start.
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    f"--window-size={WIDTH},{HEIGHT}",
                    "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                ],
            }
            capabilities = {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}
            created = client.post("/session", json={"capabilities": capabilities}).json()
            if "sessionId" not in created.get("value", {}):
                raise AssertionError(f"chromium did not start: {created}")
            session = created["value"]["sessionId"]
            try:
                yield Browser(client, session)
            finally:
                client.delete(f"/session/{session}")
    finally:
        process.terminate()
        process.wait(10)
