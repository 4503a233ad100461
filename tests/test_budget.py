"""The request budget: every upstream request together, paused by 429s, never past a deadline.

On a virtual-time loop, so the instants below are exact.
"""

from __future__ import annotations

import asyncio

import httpx
import respx
from conftest import page, run_virtual
from engine_kit import API, config_for, running_engine

from exporter.budget import RequestBudget


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
