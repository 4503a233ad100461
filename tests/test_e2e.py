"""End to end: the exporter and the simulator as separate processes over real sockets.

Every number on /metrics is compared with the simulator's own ground truth. The
simulator is paused, so the items stand still; ages move with the clock, so the
truth is taken just before and just after the scrape and every age-derived value
must lie between the two (and bucket counts must equal them when both agree).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from datetime import datetime

import httpx
import pytest
import yaml
from exposition import samples, value
from processes import exporter_process, simulator_process, wait_for

from exporter.config.schema import (
    DEFAULT_HEARTBEAT_BUCKETS,
    DEFAULT_QUEUE_WAIT_BUCKETS,
    DEFAULT_RUN_DURATION_BUCKETS,
    DEFAULT_START_DURATION_BUCKETS,
    DEFAULT_STATE_AGE_BUCKETS,
    DEFAULT_STOP_DURATION_BUCKETS,
)

SIZES = ("40", "250", "0", "7")
TIMEOUT_HEADER = {"X-Prometheus-Scrape-Timeout-Seconds": "4"}


def cumulative(ages: list[float], bounds: tuple[float, ...]) -> list[int]:
    counts = [0] * (len(bounds) + 1)
    for age in ages:
        counts[bisect_left(bounds, age)] += 1
    return [sum(counts[: i + 1]) for i in range(len(counts))]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """One simulator process with four static environments, one exporter process watching them."""
    tmp = tmp_path_factory.mktemp("e2e")
    with simulator_process("--static", *SIZES) as sim:
        env_ids = list(sim["environments"])
        environments = [
            {
                "id": e,
                "name": f"static-{n}",
                "credentials": {"type": "environment_key", "value_env": f"KEY_{n}"},
            }
            for n, e in enumerate(env_ids)
        ]
        config = {"api": {"base_url": sim["url"]}, "environments": environments}
        (tmp / "config.yaml").write_text(yaml.safe_dump(config))
        keys = {f"KEY_{n}": key for n, key in enumerate(sim["environments"].values())}
        with exporter_process("--config.file", "config.yaml", env=keys, cwd=tmp) as (url, log):
            httpx.post(f"{sim['url']}/_sim/pause")
            yield {"sim": sim["url"], "exporter": url, "envs": env_ids, "log": log, "keys": keys}


def truth(stack: dict, env_id: str, now: float) -> dict:
    return httpx.get(f"{stack['sim']}/_sim/truth", params={"environment_id": env_id, "now": now}).json()


def scrape_with_truth(stack: dict, path: str = "/metrics", **params) -> tuple[httpx.Response, dict, dict]:
    before = time.time()
    response = httpx.get(stack["exporter"] + path, params=params, headers=TIMEOUT_HEADER, timeout=10)
    after = time.time()
    early = {e: truth(stack, e, before) for e in stack["envs"]}
    late = {e: truth(stack, e, after) for e in stack["envs"]}
    return response, early, late


def assert_exact(metrics: dict, env_id: str, early: dict, late: dict) -> None:
    assert value(metrics, "anthropic_work_scrape_success", environment_id=env_id) == 1
    for state, count in early["items"].items():
        assert value(metrics, "anthropic_work_items", environment_id=env_id, state=state) == count
    for state, count in early["without_heartbeat"].items():
        assert (
            value(metrics, "anthropic_work_items_without_heartbeat", environment_id=env_id, state=state)
            == count
        )
    for family, key, bounds in (
        ("heartbeat_age", "heartbeat_ages", DEFAULT_HEARTBEAT_BUCKETS),
        ("state_age", "state_ages", DEFAULT_STATE_AGE_BUCKETS),
    ):
        for state in early[key]:
            lo, hi = early[key][state], late[key][state]
            labels = {"environment_id": env_id, "state": state}
            name = f"anthropic_work_{family}_seconds"
            got = [
                value(metrics, f"{name}_bucket", le=le, **labels)
                for le in [*(repr(b) for b in bounds), "+Inf"]
            ]
            expected_lo, expected_hi = cumulative(lo, bounds), cumulative(hi, bounds)
            # Older at "after": counts in low buckets can only fall between the two.
            assert all(b <= g <= a for g, a, b in zip(got, expected_lo, expected_hi, strict=True)), (
                state,
                got,
                expected_lo,
                expected_hi,
            )
            assert value(metrics, f"{name}_gcount", **labels) == len(lo)
            assert sum(lo) - 1e-6 <= value(metrics, f"{name}_gsum", **labels) <= sum(hi) + 1e-6
            assert (
                max(lo, default=0) - 1e-6
                <= value(metrics, f"anthropic_work_{family}_max_seconds", **labels)
                <= max(hi, default=0) + 1e-6
            )


def assert_queue(metrics: dict, env_id: str, early: dict, late: dict, before: float, after: float) -> None:
    queue = early["queue"]
    assert queue == late["queue"]  # paused: the queue stands still
    labels = {"environment_id": env_id}
    assert value(metrics, "anthropic_work_stats_success", **labels) == 1
    assert value(metrics, "anthropic_work_queue_depth", **labels) == queue["depth"]
    assert value(metrics, "anthropic_work_queue_pending", **labels) == queue["pending"]
    oldest = value(metrics, "anthropic_work_queue_oldest_age_seconds", **labels)
    if queue["oldest_queued_at"] is None:
        assert oldest == 0
    else:
        created = datetime.fromisoformat(queue["oldest_queued_at"]).timestamp()
        assert before - created - 1e-3 <= oldest <= after - created + 1e-3
    workers = value(metrics, "anthropic_work_workers_polling", **labels)
    assert workers == queue["workers_polling"]  # None (absent) for the static environments


def test_every_number_matches_the_simulators_ground_truth(stack):
    before = time.time()
    response, early, late = scrape_with_truth(stack)
    after = time.time()
    assert response.status_code == 200
    metrics = samples(response.text)
    for env_id in stack["envs"]:
        assert_exact(metrics, env_id, early[env_id], late[env_id])
        assert_queue(metrics, env_id, early[env_id], late[env_id], before, after)
    assert (
        sum(
            value(metrics, "anthropic_work_items", environment_id=stack["envs"][1], state=s)
            for s in early[stack["envs"][1]]["items"]
        )
        == 250
    )


def test_probe_matches_the_ground_truth_for_one_environment(stack):
    env_id = stack["envs"][0]
    response, early, late = scrape_with_truth(stack, "/probe", environment_id=env_id)
    metrics = samples(response.text)
    assert_exact(metrics, env_id, early[env_id], late[env_id])
    assert {
        labels
        for (_, labels) in metrics
        if labels and dict(labels).get("environment_id") not in (None, env_id)
    } == set()


FAULTS = [
    ("401", {"error_rates": {"401": 1.0}}, 0, "http_401"),
    ("404", {"error_rates": {"404": 1.0}}, 0, "http_404"),
    ("429-retry-after", {"error_rates": {"429": 1.0}, "retry_after_seconds": 0.2}, 0, "http_429"),
    ("500", {"error_rates": {"500": 1.0}}, 0, "http_500"),
    ("529", {"error_rates": {"529": 1.0}}, 0, "http_529"),
    ("html-error-page", {"error_rates": {"502": 1.0}, "html_errors": True}, 0, "http_502"),
    ("truncated-json", {"truncated_json": 1.0}, 0, "invalid_response"),
    ("repeated-cursor", {"repeat_cursor": True}, 0, "repeated_cursor"),
    ("empty-pages", {"empty_pages": 2}, 1, None),  # legal: the listing still completes, exactly
    ("flaky-500", {"error_rates": {"500": 0.3}}, None, None),  # retried: may or may not complete
    # What a hostile or broken server could send; each costs only its own environment.
    ("trickling-body", {"trickle_bytes_per_second": 1.0}, 0, "deadline"),
    ("gzip-bomb-1GiB", {"gzip_bomb_bytes": 1 << 30}, 0, "response_too_large"),
    ("malformed-gzip", {"malformed_gzip": True}, 0, "invalid_response"),
    ("json-nested-100000-deep", {"nesting_depth": 100_000}, 0, "invalid_response"),
    ("cursor-of-a-megabyte", {"cursor_bytes": 1 << 20}, 0, "invalid_response"),
    ("echoed-credential", {"echo_credential": True}, 0, "http_401"),
    ("latency-past-deadline", {"latency_seconds": 6.0}, 0, "deadline"),
]


@pytest.mark.parametrize(("fault", "settings", "success", "reason"), FAULTS, ids=[f[0] for f in FAULTS])
def test_each_fault_leaves_the_other_environments_exact_and_the_answer_on_time(
    stack, fault, settings, success, reason
):
    faulty = stack["envs"][1]  # the 250-item environment: several pages
    # The simulator makes a gzip bomb as the fault is set (5 s for 1 GiB here), not during the scrape.
    httpx.post(
        f"{stack['sim']}/_sim/faults", params={"environment_id": faulty}, json=settings, timeout=60
    ).raise_for_status()
    try:
        response, early, late = scrape_with_truth(stack)
    finally:
        httpx.post(f"{stack['sim']}/_sim/faults", params={"environment_id": faulty}, json={})
    assert response.status_code == 200
    # The scrape alone, not the ground-truth requests made after it: inside the 4 s timeout.
    assert response.elapsed.total_seconds() < 4.0
    metrics = samples(response.text)
    for env_id in stack["envs"]:
        if env_id != faulty:
            assert_exact(metrics, env_id, early[env_id], late[env_id])
    got = value(metrics, "anthropic_work_scrape_success", environment_id=faulty)
    if success == 1:
        assert_exact(metrics, faulty, early[faulty], late[faulty])
    elif success == 0:
        assert got == 0
        assert value(metrics, "anthropic_work_items", environment_id=faulty, state="queued") is None
        # Why, from the failure counter (a listing cut at the deadline is counted as it ends,
        # which can be just after this answer went out: read it again, without listing).
        counters = httpx.get(
            stack["exporter"] + "/metrics", params={"name[]": "anthropic_work_listing_failures_total"}
        )
        failures = value(
            samples(counters.text),
            "anthropic_work_listing_failures_total",
            environment_id=faulty,
            source="work",
            reason=reason,
        )
        assert failures is not None and failures >= 1
    else:
        assert got in (0, 1)
    log = stack["log"].read_text()
    assert "Traceback" not in log
    for key in stack["keys"].values():
        assert key not in log


def test_failures_are_logged_without_keys(stack):
    faulty = stack["envs"][2]
    httpx.post(
        f"{stack['sim']}/_sim/faults", params={"environment_id": faulty}, json={"error_rates": {"403": 1.0}}
    ).raise_for_status()
    try:
        httpx.get(stack["exporter"] + "/metrics", timeout=10)
    finally:
        httpx.post(f"{stack['sim']}/_sim/faults", params={"environment_id": faulty}, json={})
    text = stack["log"].read_text()
    assert f"environment_id={faulty} environment_name=static-2 source=work reason=http_403" in text
    for key in stack["keys"].values():
        assert key not in text


STEP_BUCKETS = {
    "queue_wait": DEFAULT_QUEUE_WAIT_BUCKETS,
    "start_duration": DEFAULT_START_DURATION_BUCKETS,
    "run_duration": DEFAULT_RUN_DURATION_BUCKETS,
    "stop_duration": DEFAULT_STOP_DURATION_BUCKETS,
}


@pytest.mark.slow
def test_counters_and_flow_histograms_match_the_transitions_the_simulator_made(tmp_path):
    """The demo's live environments, paused for each scrape: what the counters gained between
    the two scrapes is exactly what the simulator did between the two pauses."""
    with simulator_process() as sim:
        env_ids = list(sim["environments"])
        environments = [
            {"id": e, "credentials": {"type": "environment_key", "value_env": f"KEY_{n}"}}
            for n, e in enumerate(env_ids)
        ]
        (tmp_path / "config.yaml").write_text(
            yaml.safe_dump({"api": {"base_url": sim["url"]}, "environments": environments})
        )
        keys = {f"KEY_{n}": key for n, key in enumerate(sim["environments"].values())}
        with exporter_process("--config.file", "config.yaml", env=keys, cwd=tmp_path) as (url, _log):

            def paused_scrape() -> tuple[float, dict]:
                paused_at = httpx.post(f"{sim['url']}/_sim/pause").json()["paused_at"]
                body = httpx.get(f"{url}/metrics", headers=TIMEOUT_HEADER, timeout=10).text
                httpx.post(f"{sim['url']}/_sim/resume")
                return paused_at, samples(body)

            first_at, first = paused_scrape()

            def busy_enough() -> bool:  # wait for the world to move, not for an ordering
                window = {"environment_id": env_ids[0], "since": first_at, "until": time.time()}
                done = httpx.get(f"{sim['url']}/_sim/transitions", params=window).json()
                return done["transitions"]["stopped"] >= 3 and done["transitions"]["acknowledged"] >= 10

            wait_for("the busy environment to do some work", busy_enough, timeout=60)
            second_at, second = paused_scrape()
            truths = {
                e: httpx.get(
                    f"{sim['url']}/_sim/transitions",
                    params={"environment_id": e, "since": first_at, "until": second_at},
                ).json()
                for e in env_ids
            }
    for env_id in env_ids:
        labels = {"environment_id": env_id}
        assert value(first, "anthropic_work_scrape_success", **labels) == 1
        assert value(second, "anthropic_work_scrape_success", **labels) == 1
        truth = truths[env_id]
        for event, count in truth["transitions"].items():
            assert value(first, "anthropic_work_transitions_total", event=event, **labels) == 0
            assert value(second, "anthropic_work_transitions_total", event=event, **labels) == count, (
                env_id,
                event,
            )
        for step, durations in truth["steps"].items():
            name = f"anthropic_work_{step}_seconds"
            bounds = STEP_BUCKETS[step]
            got = [value(second, f"{name}_bucket", le=le, **labels) for le in [*map(repr, bounds), "+Inf"]]
            assert got == cumulative(durations, bounds), (env_id, step)
            assert value(second, f"{name}_count", **labels) == len(durations)
            assert abs(value(second, f"{name}_sum", **labels) - sum(durations)) < 1e-3 * (1 + len(durations))
    busy = truths[env_ids[0]]["transitions"]
    assert busy["acknowledged"] >= 10 and busy["stopped"] >= 3  # something was really compared
