"""The retrying GET: one upstream request as the API's own SDK would make it, retries included.

`RetryingGet.get` is every upstream request's way out: the work listings and
`work/stats` (through the engine) and discovery (on its own) all call it. It owns

- **the headers**: version, beta, workspace and the credential, sent as its kind says;
- **the request budget**: asked before every try (`Budget`), and told the pauses the API
  asks for, scoped to what shares their cause (`pause_scopes`): a 429 pauses that
  endpoint's requests with the same credential, a 503 with `retry-after` that
  environment's endpoint; a `retry-after` on any other status pauses nothing (on a 401
  or 404 it is ignored: those are not retried);
- **the retry rules**: 408, 409, 429, 5xx, timeouts and connection errors are retried as
  the official SDK does (backoff 0.5 s doubling to 8 s with up to 25 % jitter;
  `retry-after-ms`, `retry-after` and `x-should-retry` honoured), never past the deadline;
- **counting**: each try's code (an HTTP status, `timeout` or `error`) is told to `count`.

It knows nothing of environments, listings or metrics: a caller passes the path,
the credentials, the deadline (read anew before every try, as it may grow) and
where to count. It returns the 200 body or raises `SourceFailed` with a reason.
Upstream text in a failure's message passes through the `Redactor` first.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import NamedTuple, Protocol
from urllib.parse import urlencode

from exporter import __version__
from exporter.api.client import Reply, TransportFailure, UpstreamClient
from exporter.api.codec import (
    BETA_HEADER,
    REQUEST_ID_HEADER,
    RETRY_AFTER_HEADER,
    RETRY_AFTER_MS_HEADER,
    SHOULD_RETRY_HEADER,
    VERSION_HEADER,
    WORKSPACE_HEADER,
    auth_headers,
    parse_error,
)
from exporter.config.schema import ApiConfig, Credentials
from exporter.redact import Redactor
from exporter.results import SourceFailed

INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0
RETRYABLE_STATUS = frozenset({408, 409, 429})


class Try(NamedTuple):
    """One request as sent and answered, for the debug page's listing log.

    Kept as it came, and made readable only when a debug page shows it (`target`, and the
    request id cleaned by the redactor there): every listing keeps its log, and formatting
    each page's URL and scrubbing each request id cost more than the rest of the record."""

    path: str
    params: Mapping[str, str | int]  # the query, as sent
    code: str  # the HTTP status, or timeout / error
    size: int  # bytes of the body kept (decompressed)
    seconds: float
    request_id: str  # the API's request-id header as it came (at most 200 characters); "" when none
    attempt: int  # 0 for the first try of a request, 1 for its first retry, ...
    failure: str | None  # why this try gave no body: a reason and a message (cleaned); None for a 200

    @property
    def target(self) -> str:
        """Path and query, as sent."""
        return f"{self.path}?{urlencode(self.params)}" if self.params else self.path


Trace = Callable[[Try], None]


class RequestLog:
    """A listing's requests for the debug page, in bounded memory whatever the number of pages:
    the first `head` and the last `tail`, and how many were left out between them."""

    def __init__(self, head: int = 20, tail: int = 80):
        self.first: list[Try] = []
        self.last: deque[Try] = deque(maxlen=tail)
        self.head = head
        self.total = 0

    def append(self, attempt: Try) -> None:
        self.total += 1
        if len(self.first) < self.head:
            self.first.append(attempt)
        else:
            self.last.append(attempt)

    @property
    def omitted(self) -> int:
        """Requests between the first and the last ones kept."""
        return self.total - len(self.first) - len(self.last)


class Budget(Protocol):
    async def acquire(self, deadline: float, scopes: Iterable[Hashable]) -> None:
        """Wait until a request in `scopes` may be sent; raise SourceFailed if that is after `deadline`."""

    def pause(self, scope: Hashable, seconds: float, why: str) -> None:
        """The API asked to slow down: no request in `scope` for `seconds`."""


class RetryingGet:
    def __init__(
        self,
        api: ApiConfig,
        client: UpstreamClient,
        redactor: Redactor,
        *,
        budget: Budget | None = None,
        wall_clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ):
        self.api = api
        self.client = client
        self.redactor = redactor
        self.budget = budget
        self.wall_clock = wall_clock  # Unix time, for retry-after dates
        self.jitter = jitter
        self._headers = {  # the same on every request of this config; the credential is added per request
            VERSION_HEADER: api.anthropic_version,
            BETA_HEADER: ",".join(api.betas),
            "User-Agent": f"anthropic-work-exporter/{__version__}",
        }

    async def get(
        self,
        path: str,
        params: Mapping[str, str | int],
        credentials: Credentials,
        *,
        deadline: Callable[[], float],
        count: Callable[[str], None],
        pool: str,
        endpoint: str,
        workspace: str | None = None,
        trace: Trace | None = None,
    ) -> bytes:
        """The 200 body of one GET of `path` (from the API root), after retries; SourceFailed otherwise.

        `deadline` is event-loop time, read anew before each try (a listing's deadline
        grows when a later scrape joins it). `trace`, when given, is told every try.
        `pool` names the connections to use (the environment's), `endpoint` what is asked
        for ("work", "stats", "discovery"): together with the credential they scope the
        pauses the API asks for (`pause_scopes`).
        """
        url = f"{self.api.base_url}{path}"
        key = credentials.value.reveal()  # read at every request: a rotated key file is used at once
        headers = {**self._headers, **auth_headers(credentials.type, key)}
        by_credential, by_endpoint = scopes = pause_scopes(endpoint, pool, key)
        workspace = workspace or self.api.workspace_id
        if workspace:
            headers[WORKSPACE_HEADER] = workspace
        loop = asyncio.get_running_loop()
        retries = 0
        while True:
            if loop.time() >= deadline():
                raise SourceFailed("deadline", "not finished before the scrape deadline")
            if self.budget is not None:
                await self.budget.acquire(deadline(), scopes)
            started = loop.time()
            try:
                reply = await self.client.get(url, params, headers, self.api.request_timeout_seconds, pool)
            except TransportFailure as exc:
                count(exc.code)
                failure = SourceFailed(exc.reason, str(exc))
                if trace is not None:
                    trace(
                        Try(
                            path,
                            params,
                            exc.code,
                            0,
                            loop.time() - started,
                            "",
                            retries,
                            f"{exc.reason}: {exc}",
                        )
                    )
                if exc.reason not in ("timeout", "connection"):  # a body too large or malformed: no retry
                    raise failure from None
                delay = self._backoff(retries)
            except asyncio.CancelledError:  # the deadline cut this request short
                count("timeout")
                if trace is not None:
                    trace(
                        Try(
                            path,
                            params,
                            "timeout",
                            0,
                            loop.time() - started,
                            "",
                            retries,
                            "deadline: cut short",
                        )
                    )
                raise
            else:
                count(str(reply.status))
                if reply.status == 200:
                    if trace is not None:
                        trace(self._try(path, params, reply, loop.time() - started, retries, None))
                    return reply.body
                failure = self._http_failure(reply.status, reply.body, reply.headers)
                if trace is not None:
                    trace(self._try(path, params, reply, loop.time() - started, retries, failure))
                asked = retry_after(reply.headers, self.wall_clock())
                delay = asked if asked is not None else self._backoff(retries)
                if self.budget is not None:  # only what shares the cause waits; other statuses pause nothing
                    if reply.status == 429:  # a rate limit: this credential's requests to this endpoint
                        why = f"the API answered 429 to {endpoint} with this credential"
                        self.budget.pause(by_credential, delay, why)
                    elif reply.status == 503 and asked is not None:  # this environment's endpoint is down
                        why = f"the API answered 503 with retry-after to this environment's {endpoint}"
                        self.budget.pause(by_endpoint, delay, why)
                if not should_retry(reply.status, reply.headers):
                    raise failure
            if retries >= self.api.max_retries:
                raise failure
            if loop.time() + delay >= deadline():
                raise SourceFailed(
                    failure.reason,
                    f"{failure}; no time left before the scrape deadline to retry in {delay:.3g}s",
                )
            await asyncio.sleep(delay)
            retries += 1

    @staticmethod
    def _try(
        path: str,
        params: Mapping[str, str | int],
        reply: Reply,
        seconds: float,
        attempt: int,
        failure: SourceFailed | None,
    ) -> Try:
        request_id = reply.headers.get(REQUEST_ID_HEADER, "")[:200]
        why = None if failure is None else f"{failure.reason}: {failure}"
        return Try(path, params, str(reply.status), len(reply.body), seconds, request_id, attempt, why)

    def _backoff(self, retries: int) -> float:
        return min(INITIAL_RETRY_DELAY * 2.0**retries, MAX_RETRY_DELAY) * (1 - 0.25 * self.jitter())

    def _http_failure(self, status: int, body: bytes, headers: Mapping[str, str]) -> SourceFailed:
        error = parse_error(body, headers)
        clean = self.redactor.clean
        detail = (
            f"{clean(error.kind, 60)}: {clean(error.message)}"
            if error.kind or error.message
            else "no API error body"
        )
        suffix = f" ({REQUEST_ID_HEADER} {clean(error.request_id, 80)})" if error.request_id else ""
        return SourceFailed(f"http_{status}", f"HTTP {status} {detail}{suffix}")

    async def aclose(self) -> None:
        await self.client.aclose()


def pause_scopes(endpoint: str, pool: str, key: str) -> tuple[Hashable, Hashable]:
    """What a request's pauses are scoped to: (the endpoint, the credential), for a 429: environment
    keys are per environment, and an organisation-wide limit makes every key answer 429 itself;
    and (the endpoint, the environment), for a 503. A work/stats pause never delays a listing."""
    return ("credential", endpoint, key), ("endpoint", endpoint, pool)


def should_retry(status: int, headers: Mapping[str, str]) -> bool:
    verdict = headers.get(SHOULD_RETRY_HEADER)
    if verdict == "true":
        return True
    if verdict == "false":
        return False
    return status in RETRYABLE_STATUS or status >= 500


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asks us to wait, if it asks for 0-60 s; `now` is Unix time, for dates."""
    try:
        seconds = float(headers[RETRY_AFTER_MS_HEADER]) / 1000
    except (KeyError, ValueError):
        raw = headers.get(RETRY_AFTER_HEADER)
        if raw is None:
            return None
        try:
            seconds = float(raw)
        except ValueError:  # not seconds: an HTTP date
            try:
                parsed = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
            if parsed.tzinfo is None:
                return None
            seconds = parsed.timestamp() - now
    # NaN fails both comparisons, so it is ignored too.
    return seconds if 0 <= seconds <= MAX_RETRY_AFTER else None
