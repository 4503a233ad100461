"""The upstream client against respx: headers, pagination, retries, deadline."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest
import respx
from conftest import FakeClock, page, work

from exporter.client import ListingFailed, RequestCounter, WorkClient
from exporter.config import parse_config

URL = "https://api.anthropic.com/v1/environments/env_a/work"


def make_client(clock: FakeClock, yaml: str = "", environ=None, jitter: float = 0.0):
    config = parse_config(
        yaml + "environments:\n  - id: env_a\n", environ or {"ANTHROPIC_ENVIRONMENT_KEY": "env-key"}
    )
    client = WorkClient(
        config.api, httpx.Client(), RequestCounter(), clock=clock, sleep=clock.sleep, jitter=lambda: jitter
    )
    return client, config.environments[0]


def listing(client: WorkClient, env, clock: FakeClock, budget: float = 30.0) -> list:
    return [item for p in client.list_work(env, clock() + budget) for item in p.items]


def error_body(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}


@respx.mock
def test_headers_with_an_environment_key(clock):
    route = respx.get(URL).mock(return_value=httpx.Response(200, json=page([])))
    client, env = make_client(clock)
    listing(client, env, clock)
    headers = route.calls.last.request.headers
    assert headers["authorization"] == "Bearer env-key"
    assert "x-api-key" not in headers
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["anthropic-beta"] == "managed-agents-2026-04-01"
    assert "anthropic-workspace-id" not in headers


@respx.mock
def test_headers_with_an_api_key_a_workspace_and_a_configured_version(clock):
    route = respx.get(URL).mock(return_value=httpx.Response(200, json=page([])))
    client, env = make_client(
        clock,
        'api:\n  anthropic_version: "2026-10-21"\n  workspace_id: wrkspc_9\n'
        "  credentials: {type: api_key, value_env: K}\n",
        {"K": "api-key"},
    )
    listing(client, env, clock)
    headers = route.calls.last.request.headers
    assert headers["x-api-key"] == "api-key"
    assert "authorization" not in headers
    assert headers["anthropic-version"] == "2026-10-21"
    assert headers["anthropic-workspace-id"] == "wrkspc_9"


@respx.mock
def test_follows_cursors_through_empty_pages_with_the_configured_page_size(clock):
    route = respx.get(URL).mock(
        side_effect=[
            httpx.Response(200, json=page([work("queued")], next_page="c1")),
            httpx.Response(200, json=page([], next_page="c2")),
            httpx.Response(200, json=page([], next_page="c3")),
            httpx.Response(200, json=page([work("active"), work("stopped")], next_page="")),
        ]
    )
    client, env = make_client(clock, "api: {page_size: 2}\n")
    assert [i.state for i in listing(client, env, clock)] == ["queued", "active", "stopped"]
    params = [dict(c.request.url.params) for c in route.calls]
    assert params == [
        {"limit": "2"},
        {"limit": "2", "page": "c1"},
        {"limit": "2", "page": "c2"},
        {"limit": "2", "page": "c3"},
    ]


@respx.mock
def test_a_repeated_cursor_ends_the_listing_as_a_failure(clock):
    respx.get(URL).mock(
        side_effect=[
            httpx.Response(200, json=page([], next_page="a")),
            httpx.Response(200, json=page([], next_page="b")),
            httpx.Response(200, json=page([], next_page="a")),
        ]
    )
    client, env = make_client(clock)
    with pytest.raises(ListingFailed) as info:
        listing(client, env, clock)
    assert info.value.reason == "repeated_cursor"


@respx.mock
def test_more_pages_than_the_bound_ends_the_listing_as_a_failure(clock):
    route = respx.get(URL).mock(
        side_effect=lambda req: httpx.Response(200, json=page([], next_page=f"p{len(route.calls)}"))
    )
    client, env = make_client(clock, "api: {max_pages: 3}\n")
    with pytest.raises(ListingFailed) as info:
        listing(client, env, clock)
    assert info.value.reason == "too_many_pages"
    assert route.call_count == 3


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 529])
@respx.mock
def test_retryable_statuses_are_retried_with_exponential_backoff(clock, status):
    route = respx.get(URL).mock(
        side_effect=[
            httpx.Response(status, json=error_body("overloaded_error", "busy")),
            httpx.Response(status, json=error_body("overloaded_error", "busy")),
            httpx.Response(200, json=page([work("queued")])),
        ]
    )
    client, env = make_client(clock)
    assert len(listing(client, env, clock)) == 1
    assert route.call_count == 3
    assert clock.sleeps == [0.5, 1.0]
    assert client.requests.snapshot() == {("env_a", str(status)): 2, ("env_a", "200"): 1}


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
def test_connection_errors_and_timeouts_are_retried(clock, error, code):
    route = respx.get(URL).mock(side_effect=[error, httpx.Response(200, json=page([]))])
    client, env = make_client(clock)
    listing(client, env, clock)
    assert route.call_count == 2
    assert client.requests.snapshot()[("env_a", code)] == 1


@respx.mock
def test_jitter_shortens_the_backoff_by_up_to_a_quarter(clock):
    respx.get(URL).mock(
        side_effect=[httpx.Response(500), httpx.Response(500), httpx.Response(200, json=page([]))]
    )
    client, env = make_client(clock, jitter=1.0)
    listing(client, env, clock)
    assert clock.sleeps == [0.375, 0.75]


@respx.mock
def test_gives_up_after_max_retries(clock):
    route = respx.get(URL).mock(return_value=httpx.Response(503))
    client, env = make_client(clock, "api: {max_retries: 3}\n")
    with pytest.raises(ListingFailed) as info:
        listing(client, env, clock)
    assert info.value.reason == "http_503"
    assert route.call_count == 4
    assert clock.sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the millisecond header wins
        ({"retry-after": "120"}, 0.5),  # more than 60 s: ignored, normal backoff
        ({"retry-after": "soon"}, 0.5),
    ],
)
@respx.mock
def test_retry_after_headers_are_honoured(clock, headers, expected):
    respx.get(URL).mock(
        side_effect=[httpx.Response(429, headers=headers), httpx.Response(200, json=page([]))]
    )
    client, env = make_client(clock)
    listing(client, env, clock)
    assert clock.sleeps == [expected]


@respx.mock
def test_retry_after_as_an_http_date(clock):
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    respx.get(URL).mock(
        side_effect=[httpx.Response(429, headers={"retry-after": when}), httpx.Response(200, json=page([]))]
    )
    client, env = make_client(clock)
    listing(client, env, clock)
    assert 3.0 < clock.sleeps[0] <= 5.0


@respx.mock
def test_x_should_retry_true_retries_a_status_that_normally_is_not(clock):
    route = respx.get(URL).mock(
        side_effect=[
            httpx.Response(400, headers={"x-should-retry": "true"}),
            httpx.Response(200, json=page([])),
        ]
    )
    client, env = make_client(clock)
    listing(client, env, clock)
    assert route.call_count == 2


@respx.mock
def test_x_should_retry_false_stops_a_retry(clock):
    route = respx.get(URL).mock(return_value=httpx.Response(503, headers={"x-should-retry": "false"}))
    client, env = make_client(clock)
    with pytest.raises(ListingFailed):
        listing(client, env, clock)
    assert route.call_count == 1


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
def test_client_errors_are_not_retried_and_say_type_message_and_request_id(clock, status, kind):
    route = respx.get(URL).mock(
        return_value=httpx.Response(
            status, json=error_body(kind, "it went wrong"), headers={"request-id": "req_abc"}
        )
    )
    client, env = make_client(clock)
    with pytest.raises(ListingFailed) as info:
        listing(client, env, clock)
    assert route.call_count == 1
    assert info.value.reason == f"http_{status}"
    assert str(info.value) == f"HTTP {status} {kind}: it went wrong (request-id req_abc)"
    assert "env-key" not in str(info.value)


@respx.mock
def test_an_html_error_page_is_reported_without_its_body(clock):
    respx.get(URL).mock(return_value=httpx.Response(404, html="<html>gateway</html>"))
    client, env = make_client(clock)
    with pytest.raises(ListingFailed) as info:
        listing(client, env, clock)
    assert str(info.value) == "HTTP 404 no API error body"


@pytest.mark.parametrize("body", [b'{"data": [', b"<html>ok</html>", b'{"items": []}'])
@respx.mock
def test_a_200_that_is_not_a_listing_fails_without_retry(clock, body):
    route = respx.get(URL).mock(return_value=httpx.Response(200, content=body))
    client, env = make_client(clock)
    with pytest.raises(ListingFailed) as info:
        listing(client, env, clock)
    assert info.value.reason == "invalid_response"
    assert route.call_count == 1


@respx.mock
def test_no_retry_is_started_that_would_end_after_the_deadline(clock):
    route = respx.get(URL).mock(return_value=httpx.Response(429, headers={"retry-after": "5"}))
    client, env = make_client(clock)
    with pytest.raises(ListingFailed) as info:
        listing(client, env, clock, budget=4.0)
    assert route.call_count == 1
    assert clock.sleeps == []
    assert info.value.reason == "http_429"
    assert "deadline" in str(info.value)


@respx.mock
def test_each_request_timeout_is_bounded_by_the_time_left(clock):
    route = respx.get(URL).mock(return_value=httpx.Response(200, json=page([])))
    client, env = make_client(clock)  # request_timeout_seconds defaults to 10
    listing(client, env, clock, budget=2.5)
    assert route.calls.last.request.extensions["timeout"]["read"] == 2.5


@respx.mock
def test_a_deadline_already_passed_sends_nothing(clock):
    route = respx.get(URL).mock(return_value=httpx.Response(200, json=page([])))
    client, env = make_client(clock)
    with pytest.raises(ListingFailed) as info:
        listing(client, env, clock, budget=0)
    assert info.value.reason == "deadline"
    assert route.call_count == 0


@respx.mock
def test_pages_are_yielded_one_at_a_time(clock):
    """The next page is requested only after the caller has consumed this one."""
    route = respx.get(URL).mock(
        side_effect=[
            httpx.Response(200, json=page([work("queued")], "c1")),
            httpx.Response(200, json=page([work("queued")])),
        ]
    )
    client, env = make_client(clock)
    pages = client.list_work(env, clock() + 30)
    next(pages)
    assert route.call_count == 1
    next(pages)
    assert route.call_count == 2
