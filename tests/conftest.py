"""Shared test helpers: a fake clock, work-item builders, RFC 3339 formatting."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

# A fixed "now" for every age computed in tests: 2026-11-22T12:00:00Z.
NOW = 1795348800.0


def rfc3339(unix: float, fraction: str = "") -> str:
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(unix)))
    return f"{base}{fraction}Z"


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
        "id": "work_01",
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


class FakeClock:
    """Monotonic time that only moves when code sleeps (or a test says so)."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


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
