"""The official anthropic SDK lists the simulator's work: its typed models accept every item."""

from __future__ import annotations

import time

import httpx
import pytest
from upstream import running_simulator

from exporter.simulator import API_KEY, Faults, Profile, SimEnvironment

anthropic = pytest.importorskip("anthropic", reason="the official SDK is a test dependency")
from anthropic.types.beta.beta_environment import BetaEnvironment  # noqa: E402
from anthropic.types.beta.environments.beta_self_hosted_work import BetaSelfHostedWork  # noqa: E402
from anthropic.types.beta.environments.beta_self_hosted_work_queue_stats import (  # noqa: E402
    BetaSelfHostedWorkQueueStats,
)

SDK_HEADERS = {"anthropic-version": "2023-06-01", "anthropic-beta": "managed-agents-2026-04-01"}


@pytest.fixture
def live_env() -> SimEnvironment:
    # Every state, dead workers and items without heartbeats, from a live lifecycle. No
    # health-check items: the SDK's generated type does not model them (see below).
    return SimEnvironment(
        "env_fidelity0000",
        "fidelity",
        seed=11,
        profile=Profile(
            arrivals_per_second=0.4,
            queue_wait=40,
            worker_death_rate=0.4,
            dead_work_timeout=600,
            healthcheck_share=0.0,
        ),
    )


@pytest.mark.parametrize("credential", ["environment_key", "api_key"])
def test_the_sdk_auto_paginates_and_validates_every_item(live_env, credential):
    with running_simulator(live_env, max_page_size=25) as (sim, url):
        sim.pause()
        truth = sim.truth(live_env.id)
        if credential == "environment_key":
            client = anthropic.Anthropic(base_url=url, auth_token=live_env.key, api_key=None, max_retries=0)
        else:
            client = anthropic.Anthropic(base_url=url, api_key=API_KEY, max_retries=0)
        items = list(client.beta.environments.work.list(live_env.id, limit=25))
    assert len(items) == sum(truth["items"].values()) > 100
    assert live_env.requests > 4  # it really paged
    states = {s: sum(1 for i in items if i.state == s) for s in truth["items"]}
    assert states == truth["items"]
    for item in items:
        assert isinstance(item, BetaSelfHostedWork)
        # The SDK builds models leniently; validating the raw dump checks every type and literal.
        BetaSelfHostedWork.model_validate(item.model_dump(), strict=True)
        assert item.model_fields_set == set(BetaSelfHostedWork.model_fields)


def test_the_sdk_sees_the_api_error_shape(live_env):
    live_env.faults = Faults(error_rates={"404": 1.0})
    with running_simulator(live_env) as (_sim, url):
        client = anthropic.Anthropic(base_url=url, auth_token=live_env.key, api_key=None, max_retries=0)
        with pytest.raises(anthropic.NotFoundError) as info:
            client.beta.environments.work.list(live_env.id)
    assert info.value.status_code == 404
    assert info.value.request_id.startswith("req_")
    assert info.value.body["error"]["type"] == "not_found_error"


def test_the_sdk_retries_a_429_with_the_simulators_retry_after(live_env):
    live_env.faults = Faults(error_rates={"429": 1.0}, retry_after_seconds=0.01)
    with running_simulator(live_env) as (_sim, url):
        client = anthropic.Anthropic(base_url=url, auth_token=live_env.key, api_key=None, max_retries=2)
        started = time.monotonic()
        with pytest.raises(anthropic.RateLimitError):
            client.beta.environments.work.list(live_env.id)
    assert live_env.requests == 3
    assert time.monotonic() - started < 5


def test_health_check_items_are_what_the_sdk_models_but_for_their_data():
    """The queue sends health checks; the Python SDK's generated type knows only sessions in
    `data` (its own worker says so), the TypeScript SDK types `{id, type: "healthcheck"}`."""
    env = SimEnvironment("env_health00000", "h", seed=4, profile=Profile(arrivals_per_second=1.0))
    with running_simulator(env) as (sim, url):
        sim.pause()
        body = httpx.get(
            f"{url}/v1/environments/{env.id}/work",
            params={"limit": 1000},
            headers={**SDK_HEADERS, "authorization": f"Bearer {env.key}"},
        ).json()
    checks = [item for item in body["data"] if item["data"]["type"] == "healthcheck"]
    assert checks
    for item in checks:
        assert set(item["data"]) == {"id", "type"}
        BetaSelfHostedWork.model_validate({**item, "data": {**item["data"], "type": "session"}}, strict=True)


def test_the_sdk_reads_work_stats(live_env):
    with running_simulator(live_env) as (sim, url):
        sim.pause()
        truth = sim.truth(live_env.id)["queue"]
        client = anthropic.Anthropic(base_url=url, auth_token=live_env.key, api_key=None, max_retries=0)
        stats = client.beta.environments.work.stats(live_env.id)
    assert isinstance(stats, BetaSelfHostedWorkQueueStats)
    BetaSelfHostedWorkQueueStats.model_validate(stats.model_dump(), strict=True)
    assert (stats.depth, stats.pending, stats.oldest_queued_at, stats.workers_polling) == (
        truth["depth"],
        truth["pending"],
        truth["oldest_queued_at"],
        truth["workers_polling"],
    )


def test_the_sdk_lists_environments_with_an_api_key():
    envs = [SimEnvironment(f"env_list{n:08d}", f"e{n}") for n in range(7)]
    envs[3].archived_at = time.time() - 60
    envs[5].self_hosted = False
    with running_simulator(*envs, max_page_size=3) as (_sim, url):
        client = anthropic.Anthropic(base_url=url, api_key=API_KEY, max_retries=0)
        listed = list(client.beta.environments.list(limit=3))
        everything = list(client.beta.environments.list(limit=3, include_archived=True))
    assert [e.id for e in listed] == [e.id for n, e in enumerate(envs) if n != 3]
    assert len(everything) == 7 and everything[3].archived_at is not None
    assert [e.config.type for e in listed] == ["self_hosted"] * 4 + ["cloud", "self_hosted"]
    for environment in everything:
        assert isinstance(environment, BetaEnvironment)
        BetaEnvironment.model_validate(environment.model_dump(), strict=True)
