"""`anthropic-work-exporter --demo`: lively numbers within seconds, no key, no config."""

from __future__ import annotations

import subprocess
import time

import httpx
from exposition import samples, value
from processes import exporter_process
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
    assert value(first, "anthropic_work_heartbeat_age_max_seconds", environment_id=BUSY, state="active") < 10
    assert value(first, "anthropic_work_items_without_heartbeat", environment_id=DYING, state="starting") > 0
    # Lively: the busy environment's ages move between two scrapes.
    assert value(
        first, "anthropic_work_state_age_seconds_gsum", environment_id=BUSY, state="active"
    ) != value(second, "anthropic_work_state_age_seconds_gsum", environment_id=BUSY, state="active")


def test_demo_output_passes_promtool(tmp_path):
    promtool = require("promtool")
    with exporter_process("--demo", cwd=tmp_path) as (url, _log):
        body = httpx.get(f"{url}/metrics", timeout=10).content
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, b"")
