"""Make the README's screenshots of the pages: the landing page and a debug page of `--demo`, as
headless Chromium shows them in a 1280 px window (the first screen of each).

    python scripts/screenshots.py     # writes docs/images/landing-page.png and debug-page.png

Needs Debian's `chromium` and `chromium-driver` (scripts/test.sh installs them as root). The
demo's numbers move, so each run gives other pictures of the same pages; tests/test_browser.py
checks the pages themselves.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the WebDriver client the browser tests use

from browser import headless_chromium  # type: ignore[import-not-found]  # noqa: E402  (tests/, on the path above)

IMAGES = ROOT / "docs" / "images"
DYING = "env_01demoDyingWorkers000"  # the demo environment with something to show


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    demo = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--demo", f"--web.listen-address=127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:  # not listening yet
                pass
            if time.monotonic() > deadline:
                sys.exit("the demo did not start")
            time.sleep(0.2)
        httpx.get(f"{url}/metrics", timeout=30)  # every environment listed once
        IMAGES.mkdir(parents=True, exist_ok=True)
        with headless_chromium() as browser:
            for name, page in (
                ("landing-page.png", f"{url}/"),
                ("debug-page.png", f"{url}/probe?environment_id={DYING}&debug=true&debug_items=5"),
            ):
                browser.load(page)
                (IMAGES / name).write_bytes(browser.screenshot())
                print(f"wrote {(IMAGES / name).relative_to(ROOT)}")
    finally:
        demo.terminate()
        demo.wait(10)


if __name__ == "__main__":
    main()
