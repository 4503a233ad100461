"""List an environment's work from the API, one page at a time.

`WorkClient.list_work` yields pages and never holds more than one: the caller
aggregates each page before the next is fetched. One `httpx.Client` (and so
one connection pool) serves every environment, page and scrape.

Retries follow the official SDK: 408, 409, 429, 5xx and connection errors are
retried with exponential backoff (0.5 s doubling to at most 8 s, up to 25 %
jitter), `retry-after-ms` / `retry-after` win when they ask for 0-60 s, and
`x-should-retry` overrides the status rule either way. Nothing waits past the
scrape's deadline: a retry that would is not made.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import quote

import httpx

from . import __version__
from .config import ApiConfig, Environment
from .models import Page, UpstreamFormatError, parse_error, parse_page

INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0
RETRYABLE_STATUS = frozenset({408, 409, 429})


class ListingFailed(Exception):
    """An environment's listing could not complete; `reason` is a short code.

    Reasons: `http_<status>`, `timeout`, `connection`, `deadline`,
    `invalid_response`, `repeated_cursor`, `too_many_pages`. The message is one
    line for the log; it never contains a credential.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class RequestCounter:
    """Upstream requests by (environment_id, code): a plain, thread-safe tally."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def record(self, environment_id: str, code: str) -> None:
        with self._lock:
            key = (environment_id, code)
            self._counts[key] = self._counts.get(key, 0) + 1

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)


class WorkClient:
    """Pages of `GET /v1/environments/{id}/work` for any configured environment."""

    def __init__(
        self,
        api: ApiConfig,
        http: httpx.Client,
        requests: RequestCounter | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ):
        self.api = api
        self.http = http
        self.requests = requests or RequestCounter()
        self.clock = clock
        self.sleep = sleep
        self.jitter = jitter

    def headers(self, env: Environment) -> dict[str, str]:
        headers = {
            "anthropic-version": self.api.anthropic_version,
            "anthropic-beta": ",".join(self.api.betas),
            "User-Agent": f"anthropic-work-exporter/{__version__}",
            **env.credentials.headers(),
        }
        workspace = env.workspace_id or self.api.workspace_id
        if workspace:
            headers["anthropic-workspace-id"] = workspace
        return headers

    def list_work(self, env: Environment, deadline: float) -> Iterator[Page]:
        """Yield each page until `next_page` is null or empty; raise ListingFailed.

        `deadline` is on the `clock` (monotonic) scale.
        """
        url = f"{self.api.base_url}/v1/environments/{quote(env.id, safe='')}/work"
        headers = self.headers(env)
        seen: set[str] = set()
        cursor: str | None = None
        for _ in range(self.api.max_pages):
            params: dict[str, str | int] = {"limit": self.api.page_size}
            if cursor is not None:
                params["page"] = cursor
            page = self._get_page(env.id, url, params, headers, deadline)
            yield page
            if page.next_page is None:
                return
            if page.next_page in seen:
                raise ListingFailed(
                    "repeated_cursor",
                    "the API returned a next_page cursor it had "
                    "already returned; stopped to avoid an endless loop",
                )
            seen.add(page.next_page)
            cursor = page.next_page
        raise ListingFailed(
            "too_many_pages",
            f"more than api.max_pages={self.api.max_pages} pages; raise api.max_pages or api.page_size",
        )

    def _get_page(
        self, env_id: str, url: str, params: dict[str, str | int], headers: dict[str, str], deadline: float
    ) -> Page:
        retries = 0
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise ListingFailed("deadline", "the scrape deadline passed before the listing finished")
            timeout = min(self.api.request_timeout_seconds, remaining)
            try:
                status, response_headers, body = self._fetch(url, params, headers, timeout)
            except httpx.TimeoutException:  # upstream slow, not our bug
                self.requests.record(env_id, "timeout")
                failure = ListingFailed("timeout", f"request timed out after {timeout:.3g}s")
                delay = self._backoff(retries, None)
            except httpx.TransportError as exc:  # connection refused, reset, TLS: upstream trouble
                self.requests.record(env_id, "error")
                failure = ListingFailed("connection", f"connection error: {type(exc).__name__}")
                delay = self._backoff(retries, None)
            else:
                self.requests.record(env_id, str(status))
                if status == 200:
                    try:
                        return parse_page(json.loads(body))
                    except (ValueError, UpstreamFormatError) as exc:  # truncated or foreign body
                        raise ListingFailed(
                            "invalid_response", f"HTTP 200 but not a work listing: {exc}"
                        ) from None
                failure = _http_failure(status, response_headers, body)
                if not _should_retry(status, response_headers):
                    raise failure
                delay = self._backoff(retries, response_headers)
            if retries >= self.api.max_retries:
                raise failure
            if self.clock() + delay >= deadline:
                raise ListingFailed(
                    failure.reason,
                    f"{failure}; no time left before the scrape deadline to retry in {delay:.3g}s",
                )
            self.sleep(delay)
            retries += 1

    def _fetch(
        self, url: str, params: dict[str, str | int], headers: dict[str, str], timeout: float
    ) -> tuple[int, httpx.Headers, bytes]:
        """One GET: status, headers, body.

        The body is read with iter_bytes() so it is never stored on the Response: httpx
        responses sit in a reference cycle until the cyclic GC runs, and a stored body would
        keep every page alive until then.
        """
        with self.http.stream("GET", url, params=params, headers=headers, timeout=timeout) as response:
            return response.status_code, response.headers, b"".join(response.iter_bytes())

    def _backoff(self, retries: int, headers: httpx.Headers | None) -> float:
        if headers is not None:
            asked = _retry_after(headers)
            if asked is not None:
                return asked
        return min(INITIAL_RETRY_DELAY * 2.0**retries, MAX_RETRY_DELAY) * (1 - 0.25 * self.jitter())


def _should_retry(status: int, headers: httpx.Headers) -> bool:
    verdict = headers.get("x-should-retry")
    if verdict == "true":
        return True
    if verdict == "false":
        return False
    return status in RETRYABLE_STATUS or status >= 500


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the server asks us to wait, if it asks for 0-60 s."""
    try:
        seconds = float(headers["retry-after-ms"]) / 1000
    except (KeyError, ValueError):
        raw = headers.get("retry-after")
        if raw is None:
            return None
        try:
            seconds = float(raw)
        except ValueError:  # not seconds: an HTTP date
            try:
                parsed = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                return None
            if parsed.tzinfo is None:
                return None
            seconds = parsed.timestamp() - time.time()
    return seconds if 0 <= seconds <= MAX_RETRY_AFTER else None


def _http_failure(status: int, headers: httpx.Headers, body: bytes) -> ListingFailed:
    try:
        kind, message = parse_error(json.loads(body))
    except ValueError:  # an HTML error page from a proxy, or nothing at all
        kind, message = "", ""
    detail = f"{kind}: {message[:300]}" if kind or message else "no API error body"
    request_id = headers.get("request-id")
    suffix = f" (request-id {request_id})" if request_id else ""
    return ListingFailed(f"http_{status}", f"HTTP {status} {detail}{suffix}")
