"""No import on the hot path: after the first scrape, a scrape makes Python look for no module.

An import the interpreter has already done costs a dictionary lookup; one it has not, or one that
fails (as httpcore's `import sniffio` did on every request when sniffio was not installed), searches
sys.path: a tenth of the exporter's CPU, measured. CPython raises the audit event `import` for
every such search, so an audit hook sees each one, whichever thread makes it.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time

import httpx
from upstream import config_for, running_exporter, running_simulator, static_env

SEEN: list[str] = []
WATCHING = threading.Event()


def _hook(event: str, args: tuple[object, ...]) -> None:
    if event == "import" and WATCHING.is_set():
        SEEN.append(str(args[0]))


sys.addaudithook(_hook)  # for the life of the test process; it records only while WATCHING


def test_a_scrape_after_the_first_imports_nothing():
    envs = [static_env(f"env_{n}", 250, time.time()) for n in range(3)]
    with running_simulator(*envs) as (_sim, url), running_exporter(config_for(url, *envs)) as exporter:
        base = f"http://{exporter.address}"
        variants = [
            {},
            {"Accept": "application/openmetrics-text;version=1.0.0", "Accept-Encoding": "gzip"},
        ]
        with httpx.Client(timeout=30) as client:
            for headers in variants:  # the first of each kind may import what it needs
                assert client.get(f"{base}/metrics", headers=headers).status_code == 200
            assert client.get(f"{base}/probe?environment_id=env_0").status_code == 200
            WATCHING.set()
            try:
                for _ in range(3):
                    for headers in variants:
                        assert client.get(f"{base}/metrics", headers=headers).status_code == 200
                    assert client.get(f"{base}/probe?environment_id=env_0").status_code == 200
            finally:
                WATCHING.clear()
    assert SEEN == []


def test_the_hook_sees_a_failed_import_as_httpcore_made_one_per_request():
    """The check above can fail: an import that fails (sniffio, when not installed) is seen."""
    WATCHING.set()
    try:
        with contextlib.suppress(ImportError):
            import sniffio_not_installed_anywhere  # type: ignore[import-not-found]  # noqa: F401
    finally:
        WATCHING.clear()
    assert SEEN.pop() == "sniffio_not_installed_anywhere" and SEEN == []
