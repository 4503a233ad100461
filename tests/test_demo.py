"""`anthropic-work-exporter --demo`: lively numbers within seconds, no key, no config."""

from __future__ import annotations

import subprocess
import time

import httpx
from exposition import samples, value
from processes import exporter_process, wait_for
from tools import require

BUSY, IDLE, DYING = "env_01demoBusySandboxes00", "env_01demoIdleSandboxes00", "env_01demoDyingWorkers000"


def test_demo_serves_three_lively_environments_within_seconds(tmp_path):
    started = time.monotonic()
    with exporter_process("--demo", cwd=tmp_path) as (url, _log):
        first = samples(httpx.get(f"{url}/metrics", timeout=10).text)
        ready_in = time.monotonic() - started
        second = samples(httpx.get(f"{url}/metrics", timeout=10).text)
    assert ready_in < 10
    for env_id in (BUSY, IDLE, DYING):
        assert value(first, "anthropic_work_scrape_success", environment_id=env_id) == 1
    names = {dict(labels)["name"] for (name, labels) in first if name == "anthropic_work_environment_info"}
    assert names == {"busy-sandboxes", "idle-sandboxes", "dying-workers"}
    busy_items = sum(
        value(first, "anthropic_work_items", environment_id=BUSY, state=s)
        for s in ("queued", "starting", "active", "stopping", "stopped")
    )
    assert busy_items > 500
    assert value(first, "anthropic_work_items", environment_id=BUSY, state="queued") > 0
    assert (
        value(first, "anthropic_work_heartbeat_age_max_seconds", environment_id=DYING, state="active") > 300
    )
    # Live workers heartbeat every 30 s (the SDK's worker with its 90 s lease).
    assert value(first, "anthropic_work_heartbeat_age_max_seconds", environment_id=BUSY, state="active") <= 31
    assert value(first, "anthropic_work_items_without_heartbeat", environment_id=DYING, state="starting") > 0
    # Lively: the busy environment's ages move between two scrapes.
    assert value(
        first, "anthropic_work_state_age_seconds_gsum", environment_id=BUSY, state="active"
    ) != value(second, "anthropic_work_state_age_seconds_gsum", environment_id=BUSY, state="active")


def test_demo_shows_workers_throughput_and_queue_wait_moving_within_a_minute(tmp_path):
    with exporter_process("--demo", cwd=tmp_path) as (url, _log):
        first = samples(httpx.get(f"{url}/metrics", timeout=10).text)

        def moved() -> dict | None:
            """Work both created and acknowledged since the baseline (arrivals are random: either
            may come first)."""
            now = samples(httpx.get(f"{url}/metrics", timeout=10).text)
            done = value(now, "anthropic_work_queue_wait_seconds_count", environment_id=BUSY)
            made = value(now, "anthropic_work_transitions_total", environment_id=BUSY, event="created")
            return now if done and made else None

        later = wait_for("the busy environment's work to be created and acknowledged", moved, timeout=60)
    for env_id in (BUSY, IDLE, DYING):
        assert value(first, "anthropic_work_stats_success", environment_id=env_id) == 1
        # The first listing is the baseline: every counter exists, at 0.
        for event in ("created", "acknowledged", "started", "stop_requested", "stopped"):
            assert value(first, "anthropic_work_transitions_total", environment_id=env_id, event=event) == 0
    assert value(first, "anthropic_work_workers_polling", environment_id=BUSY) == 4
    assert value(later, "anthropic_work_transitions_total", environment_id=BUSY, event="created") > 0
    assert value(later, "anthropic_work_queue_wait_seconds_count", environment_id=BUSY) == value(
        later, "anthropic_work_transitions_total", environment_id=BUSY, event="acknowledged"
    )
    assert value(later, "anthropic_work_queue_depth", environment_id=BUSY) >= 0


def test_demo_output_passes_promtool(tmp_path):
    promtool = require("promtool")
    with exporter_process("--demo", cwd=tmp_path) as (url, _log):
        body = httpx.get(f"{url}/metrics", timeout=10).content
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, b"")
