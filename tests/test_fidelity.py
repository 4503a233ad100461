"""The official anthropic SDK lists the simulator's work: its typed models accept every item."""

from __future__ import annotations

import time

import pytest
from upstream import running_simulator

from exporter.simulator import API_KEY, Faults, Profile, SimEnvironment

anthropic = pytest.importorskip("anthropic", reason="the official SDK is a test dependency")
from anthropic.types.beta.environments.beta_self_hosted_work import BetaSelfHostedWork  # noqa: E402


@pytest.fixture
def live_env() -> SimEnvironment:
    # Every state, dead workers and items without heartbeats, from a live lifecycle.
    return SimEnvironment(
        "env_fidelity0000",
        "fidelity",
        seed=11,
        profile=Profile(arrivals_per_second=0.4, queue_wait=40, worker_death_rate=0.4, dead_work_timeout=600),
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
