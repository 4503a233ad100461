"""Shared test helpers: fake clocks, an event loop on virtual time, work-item builders."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import logging
import os
import selectors
import subprocess
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from tools import require

from exporter.logs import setup_logging
from exporter.metrics.exposition import Exposition, Response
from exporter.results import EnvironmentResult
from exporter.web.negotiate import accepts_gzip, choose_format

T = TypeVar("T")

# Property tests: CI runs a fixed budget, the same examples every run (derandomized);
# HYPOTHESIS_PROFILE=long searches far longer with fresh examples (docs/robustness.md). What a
# long run finds becomes an @example in the suite.
settings.register_profile(
    "ci", derandomize=True, max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=5_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# A fixed "now" for every age computed in tests: 2026-11-22T12:00:00Z.
NOW = 1795348800.0


def rfc3339(unix: float, fraction: str = "") -> str:
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(unix)))
    return f"{base}{fraction}Z"


_serial = itertools.count(1)


def work(
    state: str,
    *,
    age: float | None = None,
    heartbeat_age: float | None = None,
    now: float = NOW,
    **fields: Any,
) -> dict[str, Any]:
    """A work item as the API sends it; `age` sets the timestamp its state runs from."""
    item: dict[str, Any] = {
        "id": f"work_{next(_serial):06d}",
        "type": "work",
        "environment_id": "env_a",
        "state": state,
        "created_at": rfc3339(now - 3600),
        "acknowledged_at": None,
        "started_at": None,
        "latest_heartbeat_at": None,
        "stop_requested_at": None,
        "stopped_at": None,
        "metadata": {},
        "data": {"id": "session_01", "type": "session"},
        "secret": "work-secret-never-shown",
    }
    since = {
        "queued": "created_at",
        "starting": "acknowledged_at",
        "active": "started_at",
        "stopping": "stop_requested_at",
    }.get(state)
    if age is not None and since:
        item[since] = rfc3339(now - age)
    if heartbeat_age is not None:
        item["latest_heartbeat_at"] = rfc3339(now - heartbeat_age)
    item.update(fields)
    return item


def page(items: list[dict[str, Any]], next_page: str | None = None) -> dict[str, Any]:
    return {"data": items, "next_page": next_page}


def page_bytes(items: list[dict[str, Any]], next_page: str | None = None) -> bytes:
    return json.dumps(page(items, next_page)).encode()


class FakeClock:
    """Time that only moves when code sleeps (or a test says so)."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class _VirtualSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Polls real file descriptors without blocking; waiting for a timer advances the loop's clock,
    unless work runs in a thread: then it waits for real, as a thread's work takes no virtual time."""

    def __init__(self, loop: VirtualTimeLoop):
        super().__init__()
        self.loop = loop

    def select(self, timeout: float | None = None) -> list:
        events = super().select(0)
        if events:
            return events
        if timeout is None or self.loop.threads:  # only another thread can wake us: wait for real
            return super().select(0.05 if timeout is None else min(timeout, 0.05))
        self.loop.virtual_now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when every task is waiting for time.

    `asyncio.sleep(30)`, timeouts and deadlines then take no real time and happen in
    exactly the order their virtual instants say, however loaded the machine is. Work
    sent to a thread (`asyncio.to_thread`) takes no virtual time: the clock stands still
    until it is done, so a timeout around it never fires because the machine is slow.
    """

    def __init__(self, start: float = 1000.0):
        self.virtual_now = start
        self.threads = 0  # executor jobs not done yet
        super().__init__(_VirtualSelector(self))

    def time(self) -> float:
        return self.virtual_now

    def run_in_executor(self, executor, func, *args):  # type: ignore[no-untyped-def]
        future = super().run_in_executor(executor, func, *args)
        self.threads += 1

        def done(_: object) -> None:
            self.threads -= 1

        future.add_done_callback(done)
        return future


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The root logger writing the exporter's logfmt lines at info level into a string."""
    stream = io.StringIO()
    setup_logging("info", "logfmt", stream)
    yield stream
    logging.getLogger().handlers.clear()


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a fresh VirtualTimeLoop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


class _Frozen:
    def __init__(self, families):
        self.families = families

    def collect(self):
        return iter(self.families)


def snapshot(registry: CollectorRegistry) -> CollectorRegistry:
    """Collect once (one scrape) and answer any number of get_sample_value calls from it."""
    frozen = CollectorRegistry()
    frozen.register(_Frozen(list(registry.collect())))
    return frozen


OPENMETRICS = "application/openmetrics-text;version=1.0.0"


def render(
    exposition: Exposition,
    results: list[EnvironmentResult],
    environment_ids: list[str],
    own: CollectorRegistry | None = None,
    *,
    accept: str = "",
    accept_encoding: str = "",
) -> Response:
    """What a scrape with these headers gets, negotiated as the app negotiates."""
    fmt = choose_format(accept)
    assert fmt is not None
    return asyncio.run(
        exposition.render(results, environment_ids, own, fmt=fmt, gzip=accepts_gzip(accept_encoding))
    )


def served(exposition: Exposition, results: list[EnvironmentResult], environment_ids: list[str]):
    """The OpenMetrics a /metrics answer would carry, parsed back (strictly) into a registry."""
    response = render(exposition, results, environment_ids, accept=OPENMETRICS)
    frozen = CollectorRegistry()
    frozen.register(_Frozen(list(text_string_to_metric_families(response.body.decode()))))
    return frozen


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path):
    require("openssl")  # a real PKI: a CA, a server and a client certificate
    d = tmp_path
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.crt"),
    )
    for name, cn in (("server", "127.0.0.1"), ("client", "prometheus")):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={cn}",
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
        )
        (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.crt"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            str(d / "ext.cnf"),
            "-out",
            str(d / f"{name}.crt"),
        )
    return d
