"""The engine on a virtual-time loop: requests, retries, deadlines, shared listings, isolation.

Upstream is respx (no sockets); time is the loop's virtual clock, so every delay and
deadline below is exact and no test waits for real time.
"""

from __future__ import annotations

import asyncio
import email.utils

import httpx
import pytest
import respx
from conftest import NOW, page, run_virtual, work
from engine_kit import API, HeldSource, config_for, running_engine, settle

from exporter.results import SourceFailed
from exporter.running.engine import Busy, EngineCounters, Examined

URL = f"{API}/env_a/work"


def scrape_one(config, budget: float = 30.0, **kw):
    """List env_a once; (result, the loop times at which each request was sent, counters)."""
    counters = EngineCounters()

    async def go():
        async with running_engine(config, counters=counters, **kw) as engine:
            loop = asyncio.get_running_loop()
            (result,) = await engine.scrape(config.environments, loop.time() + budget)
            return result

    return run_virtual(go()), counters


def sent_at(route: respx.Route) -> list[float]:
    return [call.request.extensions["sent_at"] for call in route.calls]


def timed(*responses):
    """respx side effect: stamp each request with the loop time, then answer the next response."""
    queue = list(responses)

    def respond(request: httpx.Request):
        request.extensions["sent_at"] = asyncio.get_running_loop().time() - 1000.0
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return respond


def error_body(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}


# -- requests ------------------------------------------------------------------


@respx.mock
def test_headers_with_an_environment_key():
    route = respx.get(URL).mock(return_value=httpx.Response(200, json=page([])))
    scrape_one(config_for("env_a"))
    headers = route.calls.last.request.headers
    assert headers["authorization"] == "Bearer env-key"
    assert "x-api-key" not in headers
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["anthropic-beta"] == "managed-agents-2026-04-01"
    assert headers["accept-encoding"] == "gzip"
    assert "anthropic-workspace-id" not in headers


@respx.mock
def test_headers_with_an_api_key_a_workspace_and_a_configured_version():
    route = respx.get(URL).mock(return_value=httpx.Response(200, json=page([])))
    config = config_for(
        "env_a",
        yaml='api:\n  anthropic_version: "2026-10-21"\n  workspace_id: wrkspc_9\n'
        "  credentials: {type: api_key, value_env: K}\n",
        environ={"K": "api-key"},
    )
    scrape_one(config)
    headers = route.calls.last.request.headers
    assert headers["x-api-key"] == "api-key"
    assert "authorization" not in headers
    assert headers["anthropic-version"] == "2026-10-21"
    assert headers["anthropic-workspace-id"] == "wrkspc_9"


@respx.mock
def test_follows_cursors_through_empty_pages_with_the_configured_page_size():
    route = respx.get(URL).mock(
        side_effect=[
            httpx.Response(200, json=page([work("queued")], next_page="c1")),
            httpx.Response(200, json=page([], next_page="c2")),
            httpx.Response(200, json=page([], next_page="c3")),
            httpx.Response(200, json=page([work("active"), work("stopped")], next_page="")),
        ]
    )
    result, _ = scrape_one(config_for("env_a", yaml="api: {page_size: 2}\n"))
    assert result.success
    items = result.values["work"].items
    assert (items["queued"], items["active"], items["stopped"]) == (1, 1, 1)
    params = [dict(c.request.url.params) for c in route.calls]
    assert params == [
        {"limit": "2"},
        {"limit": "2", "page": "c1"},
        {"limit": "2", "page": "c2"},
        {"limit": "2", "page": "c3"},
    ]


@pytest.mark.parametrize(
    ("responses", "reason"),
    [
        (
            [page([], next_page="a"), page([], next_page="b"), page([], next_page="a")],
            "repeated_cursor",
        ),
        ([page([], next_page=f"p{n}") for n in range(4)], "too_many_pages"),  # api.max_pages: 3
        ([page([], next_page="c" * 4097)], "invalid_response"),  # a cursor of megabytes, in small
    ],
    ids=["repeated-cursor", "too-many-pages", "huge-cursor"],
)
@respx.mock
def test_cursors_that_would_never_end_end_the_listing_as_a_failure(responses, reason):
    route = respx.get(URL).mock(side_effect=[httpx.Response(200, json=r) for r in responses])
    result, counters = scrape_one(config_for("env_a", yaml="api: {max_pages: 3}\n"))
    assert not result.success
    assert result.failures["work"].reason == reason
    assert route.call_count == min(len(responses), 3)
    assert counters.failures == {"env_a": {("work", reason): 1}}


@respx.mock
def test_a_long_cursor_loop_is_caught_in_constant_memory_well_before_max_pages():
    cycle = [f"p{n}" for n in range(40)]  # longer than the exact window of recent cursors
    route = respx.get(URL).mock(
        side_effect=lambda request: httpx.Response(
            200, json=page([], next_page=cycle[(cycle.index(request.url.params.get("page", "p39")) + 1) % 40])
        )
    )
    result, _ = scrape_one(config_for("env_a", yaml="api: {max_pages: 1000}\n"))
    assert result.failures["work"].reason == "repeated_cursor"
    assert route.call_count < 200


# -- retries -------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 529])
@respx.mock
def test_retryable_statuses_are_retried_with_exponential_backoff(status):
    busy = httpx.Response(status, json=error_body("overloaded_error", "busy"))
    route = respx.get(URL).mock(
        side_effect=timed(busy, busy, httpx.Response(200, json=page([work("queued")])))
    )
    result, counters = scrape_one(config_for("env_a"))
    assert result.success
    assert sent_at(route) == [0.0, 0.5, 1.5]
    assert counters.requests == {"env_a": {str(status): 2, "200": 1}}


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (httpx.ConnectError("refused"), "error"),
        (httpx.RemoteProtocolError("reset"), "error"),
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.ConnectTimeout("slow"), "timeout"),
    ],
)
@respx.mock
def test_connection_errors_and_timeouts_are_retried(error, code):
    route = respx.get(URL).mock(side_effect=timed(error, httpx.Response(200, json=page([]))))
    result, counters = scrape_one(config_for("env_a"))
    assert result.success
    assert sent_at(route) == [0.0, 0.5]
    assert counters.requests == {"env_a": {code: 1, "200": 1}}


@respx.mock
def test_jitter_shortens_the_backoff_by_up_to_a_quarter():
    route = respx.get(URL).mock(
        side_effect=timed(httpx.Response(500), httpx.Response(500), httpx.Response(200, json=page([])))
    )
    scrape_one(config_for("env_a"), jitter=1.0)
    assert sent_at(route) == [0.0, 0.375, 1.125]


@respx.mock
def test_gives_up_after_max_retries():
    route = respx.get(URL).mock(side_effect=timed(httpx.Response(503)))
    result, _ = scrape_one(config_for("env_a", yaml="api: {max_retries: 3}\n"))
    assert result.failures["work"].reason == "http_503"
    assert sent_at(route) == [0.0, 0.5, 1.5, 3.5]


@pytest.mark.parametrize(
    ("headers", "delay"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the millisecond header wins
        ({"retry-after": "120"}, 0.5),  # more than 60 s: ignored, normal backoff
        ({"retry-after": "soon"}, 0.5),
        ({"retry-after": "nan"}, 0.5),
        ({"retry-after": email.utils.formatdate(NOW + 5, usegmt=True)}, 5.0),  # an HTTP date
    ],
)
@respx.mock
def test_retry_after_headers_are_honoured(headers, delay):
    route = respx.get(URL).mock(
        side_effect=timed(httpx.Response(429, headers=headers), httpx.Response(200, json=page([])))
    )
    scrape_one(config_for("env_a"))
    assert sent_at(route) == [0.0, delay]


@pytest.mark.parametrize(("status", "verdict", "calls"), [(400, "true", 2), (503, "false", 1)])
@respx.mock
def test_x_should_retry_overrides_the_status_rule(status, verdict, calls):
    route = respx.get(URL).mock(
        side_effect=[
            httpx.Response(status, headers={"x-should-retry": verdict}),
            httpx.Response(200, json=page([])),
        ]
    )
    scrape_one(config_for("env_a"))
    assert route.call_count == calls


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
    ],
)
@respx.mock
def test_client_errors_are_not_retried_and_say_type_message_and_request_id(status, kind):
    route = respx.get(URL).mock(
        return_value=httpx.Response(
            status, json=error_body(kind, "it went wrong"), headers={"request-id": "req_abc"}
        )
    )
    result, _ = scrape_one(config_for("env_a"))
    assert route.call_count == 1
    failure = result.failures["work"]
    assert failure.reason == f"http_{status}"
    assert failure.message == f"HTTP {status} {kind}: it went wrong (request-id req_abc)"


@respx.mock
def test_an_html_error_page_is_reported_without_its_body():
    respx.get(URL).mock(return_value=httpx.Response(404, html="<html>gateway</html>"))
    result, _ = scrape_one(config_for("env_a"))
    assert result.failures["work"].message == "HTTP 404 no API error body"


@pytest.mark.parametrize(
    "body",
    [b'{"data": [', b"<html>ok</html>", b'{"items": []}', b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe"],
    ids=["truncated", "html", "foreign", "nested-100000-deep", "not-utf8"],
)
@respx.mock
def test_a_200_that_is_not_a_listing_fails_without_retry(body):
    route = respx.get(URL).mock(return_value=httpx.Response(200, content=body))
    result, _ = scrape_one(config_for("env_a"))
    assert result.failures["work"].reason == "invalid_response"
    assert route.call_count == 1


@respx.mock
def test_no_retry_is_started_that_would_end_after_the_deadline():
    route = respx.get(URL).mock(return_value=httpx.Response(429, headers={"retry-after": "5"}))
    result, _ = scrape_one(config_for("env_a"), budget=4.0)
    assert route.call_count == 1
    assert result.failures["work"].reason == "http_429"
    assert "no time left before the scrape deadline" in result.failures["work"].message


@respx.mock
def test_a_deadline_already_passed_sends_nothing():
    route = respx.get(URL).mock(return_value=httpx.Response(200, json=page([])))
    result, _ = scrape_one(config_for("env_a"), budget=0)
    assert result.failures["work"].reason == "deadline"
    assert route.call_count == 0


@respx.mock
def test_a_slow_response_ends_at_the_request_timeout_and_is_retried():
    async def slow(request):
        await asyncio.sleep(60)  # virtual time: the request timeout (2.5 s) ends it
        return httpx.Response(200, json=page([]))

    respx.get(URL).mock(side_effect=[slow, httpx.Response(200, json=page([]))])
    result, counters = scrape_one(config_for("env_a", yaml="api: {request_timeout_seconds: 2.5}\n"))
    assert result.success
    # Timed out at 2.5 s, retried after 0.5 s: done at 3.0 s.
    assert result.duration_seconds == 3.0
    assert counters.requests == {"env_a": {"timeout": 1, "200": 1}}


# -- deadlines, shared listings, concurrency ---------------------------------------


def test_a_scrape_that_joins_a_listing_waits_up_to_its_own_deadline():
    """A shorter scrape gives up at its deadline; the listing runs on for a longer one and is shared."""
    source = HeldSource()
    config = config_for("env_a")

    async def go():
        async with running_engine(config, [source]) as engine:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            short = asyncio.create_task(engine.scrape(config.environments, t0 + 5))
            await source.entered["env_a"].wait()
            long = asyncio.create_task(engine.scrape(config.environments, t0 + 20))
            (early,) = await short
            gave_up_at = loop.time() - t0
            await asyncio.sleep(5)  # virtual: the listing is still running at t0 + 10
            source.release("env_a")
            (late,) = await long
            return early, gave_up_at, late, loop.time() - t0

    early, gave_up_at, late, done_at = run_virtual(go())
    assert (early.success, early.failures["work"].reason, gave_up_at) == (False, "deadline", 5.0)
    assert (late.success, late.values["work"], done_at) == (True, "listed", 10.0)
    assert source.calls == {"env_a": 1}


def test_a_listing_past_every_deadline_is_abandoned_and_frees_its_slot():
    source = HeldSource()
    config = config_for("env_stuck", "env_ok", yaml="scrape: {concurrency: 1}\n")
    stuck, ok = config.environments

    async def go():
        async with running_engine(config, [source]) as engine:
            loop = asyncio.get_running_loop()
            (first,) = await engine.scrape([stuck], loop.time() + 5)
            source.release("env_ok")
            (second,) = await engine.scrape([ok], loop.time() + 5)
            return first, second

    first, second = run_virtual(go())
    assert first.failures["work"].reason == "deadline"
    assert source.cancelled == ["env_stuck"]  # its request was cancelled, its connection closed
    assert second.success


@pytest.mark.parametrize("concurrency", [1, 3])
def test_environments_are_listed_concurrently_up_to_the_configured_bound(concurrency):
    source = HeldSource()
    ids = [f"env_{n}" for n in range(5)]
    config = config_for(*ids, yaml=f"scrape: {{concurrency: {concurrency}}}\n")

    async def go():
        async with running_engine(config, [source]) as engine:
            scrape = asyncio.create_task(
                engine.scrape(config.environments, asyncio.get_running_loop().time() + 30)
            )
            await settle()
            at_once = list(source.started)
            for env_id in ids:
                source.release(env_id)
            return at_once, await scrape

    at_once, results = run_virtual(go())
    assert at_once == ids[:concurrency]
    assert [r.success for r in results] == [True] * 5


def test_environments_that_ran_out_of_time_queue_behind_the_others():
    source = HeldSource()
    config = config_for("env_stuck1", "env_stuck2", "env_ok", yaml="scrape: {concurrency: 2}\n")
    source.release("env_ok")

    async def go():
        async with running_engine(config, [source]) as engine:
            loop = asyncio.get_running_loop()
            first = await engine.scrape(config.environments, loop.time() + 5)
            second = await engine.scrape(config.environments, loop.time() + 5)
            return first, second

    first, second = run_virtual(go())
    # The first time the stuck ones take both slots; the next time the healthy one goes first.
    assert [r.success for r in first] == [False, False, False]
    assert [r.success for r in second] == [False, False, True]
    assert source.started == ["env_stuck1", "env_stuck2", "env_ok", "env_stuck1", "env_stuck2"]


def test_overlapping_scrapes_share_one_listing_per_environment():
    source = HeldSource()
    config = config_for("env_a", "env_b")

    async def go():
        async with running_engine(config, [source]) as engine:
            deadline = asyncio.get_running_loop().time() + 30
            scrapes = [asyncio.create_task(engine.scrape(config.environments, deadline)) for _ in range(3)]
            await source.entered["env_b"].wait()
            source.release("env_a", "env_b")
            return await asyncio.gather(*scrapes)

    results = run_virtual(go())
    assert [[r.success for r in rs] for rs in results] == [[True, True]] * 3
    assert source.calls == {"env_a": 1, "env_b": 1}


class StartsAScrapeOnFailure(EngineCounters):
    """An observer that, told of a failed listing, starts another scrape of the same environment.

    Its first step then runs right after the failed listing's last one, before anything else
    that listing's end scheduled: the moment the soak test once caught a scrape joining a
    listing whose timeout had already finished (RuntimeError: Cannot change state of finished
    Timeout), which reached the HTTP response as a 500.
    """

    def __init__(self, start):
        super().__init__()
        self.start, self.started = start, []

    def failed(self, environment_id, source, reason):
        super().failed(environment_id, source, reason)
        if not self.started:
            self.started.append(asyncio.create_task(self.start()))


def test_a_scrape_that_arrives_in_the_step_a_listing_ends_gets_a_result():
    source = HeldSource()
    source.errors["env_a"] = SourceFailed("http_503", "unavailable")
    source.release("env_a")
    config = config_for("env_a")

    async def go():
        async with running_engine(config, [source], counters=observer) as engine:
            deadline = asyncio.get_running_loop().time() + 30
            engine_ref.append(engine)
            (first,) = await engine.scrape(config.environments, deadline)
            while not observer.started:
                await asyncio.sleep(0)
            (second,) = await observer.started[0]
            return first, second

    engine_ref: list = []

    async def another():
        return await engine_ref[0].scrape(config.environments, asyncio.get_running_loop().time() + 60)

    observer = StartsAScrapeOnFailure(another)
    first, second = run_virtual(go())
    assert first.failures["work"].reason == second.failures["work"].reason == "http_503"
    assert source.calls == {"env_a": 2}  # the second scrape listed again: the first had ended


# -- isolation -------------------------------------------------------------------


def test_our_own_bug_is_that_environments_failure_logged_once_with_its_traceback(log_stream):
    source = HeldSource()
    source.errors["env_bad"] = KeyError("oops")
    source.release("env_bad", "env_ok")
    config = config_for("env_bad", "env_ok")
    counters = EngineCounters()

    async def go():
        async with running_engine(config, [source], counters=counters) as engine:
            loop = asyncio.get_running_loop()
            return [await engine.scrape(config.environments, loop.time() + 5) for _ in range(3)]

    scrapes = run_virtual(go())
    assert [[r.success for r in rs] for rs in scrapes] == [[False, True]] * 3
    assert scrapes[0][0].failures["work"].reason == "internal"
    assert counters.failures == {"env_bad": {("work", "internal"): 3}}
    lines = log_stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "environment_id=env_bad" in lines[0] and "reason=internal" in lines[0]
    assert "error=\"KeyError: 'oops'\"" in lines[0]
    assert "traceback=" in lines[0] and "raise self.errors[env.id]" in lines[0]


@respx.mock
def test_an_error_that_echoes_the_key_is_logged_without_it(log_stream):
    key = "sk-ant-env-key-0123456789"
    respx.get(URL).mock(
        return_value=httpx.Response(
            401,
            json=error_body("authentication_error", f"invalid key {key}\n\x1b[31mred"),
            headers={"request-id": f"req_{key}"},
        )
    )
    result, _ = scrape_one(config_for("env_a", environ={"ANTHROPIC_ENVIRONMENT_KEY": key}))
    text = log_stream.getvalue()
    assert key not in text and key not in result.failures["work"].message
    assert result.failures["work"].message == (
        "HTTP 401 authentication_error: invalid key [REDACTED]??[31mred (request-id req_[REDACTED])"
    )
    assert 'error="HTTP 401 authentication_error: invalid key [REDACTED]' in text


# -- the debug page's listings ------------------------------------------------------------


def test_debug_pages_join_the_listing_in_flight_without_extending_it_and_read_its_whole_log():
    """40 debug pages for an environment a scrape is listing: one listing in all; each page gets the
    requests made before it joined too; none holds the listing past the scrape's deadline."""
    config = config_for("env_a")
    entered = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        if "page" not in request.url.params:
            return httpx.Response(200, json=page([work("queued", age=400)], next_page="p2"))
        entered.set()
        await asyncio.sleep(4)
        return httpx.Response(200, json=page([work("queued", age=500)]))

    async def go():
        async with running_engine(config) as engine:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            scrape = asyncio.create_task(engine.scrape(config.environments, t0 + 5))
            await entered.wait()
            pages = [asyncio.create_task(engine.examine(config.environments[0], t0 + 60)) for _ in range(40)]
            (scraped,) = await scrape
            examined = await asyncio.gather(*pages)
            return scraped, examined, loop.time() - t0

    with respx.mock:
        route = respx.get(URL).mock(side_effect=slow)
        scraped, examined, took = run_virtual(go())
    assert route.call_count == 2  # one listing of two pages, for the scrape and all 40 pages
    assert scraped.success and took == 4.0
    for seen in examined:
        assert seen.joined and seen.result is scraped
        assert [t.target for t in seen.tries.first] == [
            "/v1/environments/env_a/work?limit=100",
            "/v1/environments/env_a/work?limit=100&page=p2",
        ]
        assert seen.result.values["work"].attention.counts["queued"] == 2


def test_debug_pages_list_in_a_pool_of_their_own_and_never_take_a_scrapes_slot():
    """Every environment is stuck for debug pages (concurrency 2 for scrapes): 4 debug listings run,
    16 wait, the rest are Busy at once; a scrape of the others meanwhile takes every slot it needs."""
    source = HeldSource()
    ids = [f"env_{n:02d}" for n in range(30)]
    config = config_for(*ids, "env_x", "env_y", yaml="scrape: {concurrency: 2}\n")
    *stuck, x, y = config.environments

    async def go():
        async with running_engine(config, [source]) as engine:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            pages = [asyncio.create_task(engine.examine(env, t0 + 10)) for env in stuck]
            await settle()
            source.release("env_x", "env_y")
            scraped = await engine.scrape([x, y], t0 + 10)
            took = loop.time() - t0
            outcomes = await asyncio.gather(*pages, return_exceptions=True)
            return scraped, outcomes, took

    scraped, outcomes, took = run_virtual(go())
    assert [r.success for r in scraped] == [True, True] and took == 0.0  # no debug page took their slots
    busy = [o for o in outcomes if isinstance(o, Busy)]
    listed = [o for o in outcomes if isinstance(o, Examined)]
    assert (len(listed), len(busy)) == (4, 26)  # 4 ran to the deadline; 16 waited in vain, 10 refused
    assert all(b.retry_after == 10.0 for b in busy)
    assert all(o.result.failures["work"].reason == "deadline" for o in listed)
    assert sorted(source.started) == sorted([*ids[:4], "env_x", "env_y"])


def test_a_debug_pages_own_listing_changes_nothing_scrapes_are_served_or_counted():
    source = HeldSource()
    config = config_for("env_a")
    counters = EngineCounters()
    kept = []

    async def go():
        async with running_engine(config, [source], counters=counters, on_result=kept.append) as engine:
            loop = asyncio.get_running_loop()
            return await engine.examine(config.environments[0], loop.time() + 0.1)  # a client's short timeout

    examined = run_virtual(go())
    assert not examined.joined and examined.result.failures["work"].reason == "deadline"
    assert kept == [] and counters.failures == {}  # not stored, not counted, not logged
