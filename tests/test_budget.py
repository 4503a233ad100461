"""The request budget: every upstream request together, paused by 429s, never past a deadline.

On a virtual-time loop, so the instants below are exact.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
import respx
from conftest import NOW, page, run_virtual, work
from engine_kit import API, config_for, running_engine, work_source

from exporter.api.budget import RequestBudget
from exporter.config.load import parse_config
from exporter.endpoints.stats import StatsSource

STATS = {"depth": 0, "pending": 0, "oldest_queued_at": None, "workers_polling": 1}


def stamp(answer: httpx.Response, log: list[float]):
    def respond(request: httpx.Request) -> httpx.Response:
        log.append(asyncio.get_running_loop().time() - 1000.0)
        return answer

    return respond


def scrape(ids: list[str], budget: RequestBudget, timeout: float = 30.0) -> list:
    config = config_for(*ids)

    async def go():
        async with running_engine(config, budget=budget) as engine:
            return await engine.scrape(config.environments, asyncio.get_running_loop().time() + timeout)

    return run_virtual(go())


@respx.mock
def test_requests_are_spread_at_the_budgeted_rate_after_a_burst():
    sent: list[float] = []
    for n in range(6):
        respx.get(f"{API}/env_{n}/work").mock(side_effect=stamp(httpx.Response(200, json=page([])), sent))
    budget = RequestBudget(rate=2.0)  # a burst of 2, then one every 0.5 s
    results = scrape([f"env_{n}" for n in range(6)], budget)
    assert [r.success for r in results] == [True] * 6
    assert sent == [0.0, 0.0, 0.5, 1.0, 1.5, 2.0]
    assert budget.waited_seconds == 0.5 + 1.0 + 1.5 + 2.0


@respx.mock
def test_a_429_with_retry_after_pauses_every_request_not_just_its_own():
    """env_a is told to retry after 3 s; env_b, whose next page is due meanwhile, waits too."""
    sent: dict[str, list[float]] = {"env_a": [], "env_b": []}

    async def env_a(request: httpx.Request) -> httpx.Response:
        sent["env_a"].append(asyncio.get_running_loop().time() - 1000.0)
        if len(sent["env_a"]) == 1:
            await asyncio.sleep(0.05)
            return httpx.Response(429, headers={"retry-after": "3"})  # at 0.05: everyone waits till 3.05
        return httpx.Response(200, json=page([]))

    respx.get(f"{API}/env_a/work").mock(side_effect=env_a)

    async def env_b(request: httpx.Request) -> httpx.Response:
        sent["env_b"].append(asyncio.get_running_loop().time() - 1000.0)
        if "page" not in request.url.params:
            await asyncio.sleep(0.1)  # its first page takes a moment; the 429 comes back meanwhile
            return httpx.Response(200, json=page([], next_page="p2"))
        return httpx.Response(200, json=page([]))

    respx.get(f"{API}/env_b/work").mock(side_effect=env_b)
    budget = RequestBudget()  # no rate limit: only the pause
    results = scrape(["env_a", "env_b"], budget)
    assert [r.success for r in results] == [True, True]
    assert [round(t, 6) for t in sent["env_a"]] == [0.0, 3.05]
    assert [round(t, 6) for t in sent["env_b"]] == [0.0, 3.05]  # its page 2, due at 0.1, waited too
    assert round(budget.waited_seconds, 6) == 2.95  # env_b's; env_a slept the delay itself


@respx.mock
def test_waiting_for_budget_never_passes_the_deadline():
    for n in range(5):
        respx.get(f"{API}/env_{n}/work").mock(return_value=httpx.Response(200, json=page([])))
    budget = RequestBudget(rate=1.0)  # a burst of 1, then one a second
    results = scrape([f"env_{n}" for n in range(5)], budget, timeout=2.5)
    assert sorted(r.success for r in results) == [False, False, True, True, True]
    failed = [r.failures["work"] for r in results if not r.success]
    assert {(f.reason, f.message) for f in failed} == {
        ("deadline", "no request budget left before the scrape deadline")
    }


def test_a_reload_changes_the_rate_and_keeps_no_more_tokens_than_the_new_burst():
    budget = RequestBudget(rate=100.0)
    budget.configure(2.0)
    assert budget.rate == 2.0

    async def go():
        loop = asyncio.get_running_loop()
        times = []
        for _ in range(3):
            await budget.acquire(loop.time() + 60)
            times.append(loop.time() - 1000.0)
        return times

    assert run_virtual(go()) == [0.0, 0.0, 0.5]


# -- pauses, scoped to what shares their cause -----------------------------------------------


def scrapes(config, times: list[float], timeout: float = 9.5):
    """Scrape every environment of `config` with both sources at each of `times` (virtual seconds from
    the start): each scrape's (result, seconds it took) per environment, and the shared budget."""
    budget = RequestBudget()

    async def go():
        out = []
        sources = [work_source(config), StatsSource(lambda: NOW)]
        async with running_engine(config, sources, budget=budget) as engine:
            loop = asyncio.get_running_loop()
            for at in times:
                await asyncio.sleep(max(0.0, 1000.0 + at - loop.time()))
                started = loop.time()
                results = await engine.scrape(config.environments, started + timeout)
                out.append([(r, loop.time() - started) for r in results])
        return out, budget

    return run_virtual(go())


def healthy(*env_ids: str) -> None:
    for env_id in env_ids:
        respx.get(f"{API}/{env_id}/work").mock(return_value=httpx.Response(200, json=page([])))


@respx.mock
@pytest.mark.parametrize("endpoint", ["work", "work/stats"])
def test_a_503_with_retry_after_pauses_that_environments_endpoint_only(endpoint):
    """env_a's endpoint answers 503, retry-after 30: the others list on every scrape, and env_a's
    endpoint fails at once with reason `paused` while the pause lasts, asking nothing upstream."""
    for env_id in ("env_a", "env_b", "env_c"):
        respx.get(f"{API}/{env_id}/work").mock(return_value=httpx.Response(200, json=page([])))
        respx.get(f"{API}/{env_id}/work/stats").mock(return_value=httpx.Response(200, json=STATS))
    down = respx.get(f"{API}/env_a/{endpoint}").mock(
        return_value=httpx.Response(503, headers={"retry-after": "30"})
    )
    out, budget = scrapes(config_for("env_a", "env_b", "env_c"), [0, 10, 20, 31])
    source = "work" if endpoint == "work" else "stats"
    reasons = [scrape[0][0].failures[source].reason for scrape in out]
    assert reasons == ["http_503", "paused", "paused", "http_503"]  # asked again once the 30 s are over
    assert down.call_count == 2
    assert "paused 20s more, past this scrape's deadline" in out[1][0][0].failures[source].message
    for scrape in out:
        assert [r.success for r, _ in scrape[1:]] == [True, True]  # env_b, env_c: every scrape
        assert all("stats" not in r.failures for r, _ in scrape[1:])
        assert all(took == 0.0 for _, took in scrape)  # nobody waited: every scrape answers at once
    if source == "stats":
        assert all(scrape[0][0].success for scrape in out)  # a stats pause never costs the listing
    assert budget.waited_seconds == 0.0


@respx.mock
@pytest.mark.parametrize("status", [401, 403, 404, 500, 502, 529])
def test_a_retry_after_on_any_other_status_pauses_nothing(status):
    failing = respx.get(f"{API}/env_a/work").mock(
        return_value=httpx.Response(status, headers={"retry-after": "30", "x-should-retry": "false"})
    )
    healthy("env_b")
    stats = respx.get(url__regex=rf"{API}/env_./work/stats").mock(
        return_value=httpx.Response(200, json=STATS)
    )
    out, budget = scrapes(config_for("env_a", "env_b"), [0, 5, 10])
    assert [scrape[0][0].failures["work"].reason for scrape in out] == [f"http_{status}"] * 3
    assert failing.call_count == 3  # asked on every scrape: nothing was paused
    assert all(scrape[1][0].success for scrape in out)
    assert stats.call_count == 6
    assert budget.waited_seconds == 0.0


@respx.mock
def test_a_429_pauses_that_endpoints_requests_with_the_same_credential_only():
    """env_a and env_b share the default key, env_c has its own: env_a's 429 (retry-after 3) holds
    env_b's next page until the pause ends, never env_c's, nor env_a's work/stats."""
    sent: dict[str, list[float]] = {"env_a": [], "env_b": [], "env_c": []}

    def paged(env_id: str, first: httpx.Response):
        async def respond(request: httpx.Request) -> httpx.Response:
            sent[env_id].append(round(asyncio.get_running_loop().time() - 1000.0, 6))
            if len(sent[env_id]) == 1:
                await asyncio.sleep(0.1)
                return first
            return httpx.Response(200, json=page([]))

        return respond

    respx.get(f"{API}/env_a/work").mock(
        side_effect=paged("env_a", httpx.Response(429, headers={"retry-after": "3"}))
    )
    for env_id in ("env_b", "env_c"):
        respx.get(f"{API}/{env_id}/work").mock(
            side_effect=paged(env_id, httpx.Response(200, json=page([], next_page="p2")))
        )
    stats = respx.get(url__regex=rf"{API}/env_./work/stats").mock(
        return_value=httpx.Response(200, json=STATS)
    )
    config = parse_config(
        "api: {credentials: {type: environment_key, value_env: SHARED}}\n"
        "environments:\n  - id: env_a\n  - id: env_b\n"
        "  - id: env_c\n    credentials: {type: environment_key, value_env: OWN}\n",
        {"SHARED": "sk-shared-key-0123456789", "OWN": "sk-own-key-0123456789"},
    )
    (scrape,), budget = scrapes(config, [0])
    assert [r.success for r, _ in scrape] == [True, True, True]
    assert [bool(r.failures) for r, _ in scrape] == [False, False, False]
    assert sent["env_a"] == [0.0, 3.1]  # its own retry, after the 3 s asked for
    assert sent["env_b"] == [0.0, 3.1]  # page 2 was due at 0.1: it waited for the pause too
    assert sent["env_c"] == [0.0, 0.1]  # another key: not paused
    assert stats.call_count == 3
    assert round(budget.waited_seconds, 6) == 3.0  # env_b's wait; env_a slept its own retry delay


@respx.mock
def test_every_stats_answering_429_never_costs_a_listing():
    """The case that blinded every environment: work/stats 429 with retry-after 20 everywhere."""
    for env_id in ("env_a", "env_b"):
        respx.get(f"{API}/{env_id}/work").mock(return_value=httpx.Response(200, json=page([work("queued")])))
        respx.get(f"{API}/{env_id}/work/stats").mock(
            return_value=httpx.Response(429, headers={"retry-after": "20"})
        )
    out, _ = scrapes(config_for("env_a", "env_b"), [0, 5, 10, 15, 21, 25])
    for scrape in out:
        assert [r.success for r, _ in scrape] == [True, True]
        assert {r.failures["stats"].reason for r, _ in scrape} <= {"http_429", "paused"}
        assert [r.values["work"].items["queued"] for r, _ in scrape] == [1, 1]
