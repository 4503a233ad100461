"""The retrying GET: one upstream request as the API's own SDK would make it, retries included.

`RetryingGet.get` is every upstream request's way out: the work listings and
`work/stats` (through the engine) and discovery (on its own) all call it. It owns

- **the headers**: version, beta, workspace and the credential, sent as its kind says;
- **the request budget**: asked before every try (`Budget`);
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
from collections.abc import Callable, Mapping
from typing import NamedTuple, Protocol
from urllib.parse import urlencode

from . import __version__
from .client import Reply, TransportFailure, UpstreamClient
from .config import ApiConfig, Credentials
from .models import (
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
from .redact import Redactor
from .sources import SourceFailed

INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0
RETRYABLE_STATUS = frozenset({408, 409, 429})


class Try(NamedTuple):
    """One request as sent and answered, for the debug page's listing log."""

    path: str  # path and query, as sent
    code: str  # the HTTP status, or timeout / error
    size: int  # bytes of the body kept (decompressed)
    seconds: float
    request_id: str  # the API's request-id header, cleaned; "" when none
    attempt: int  # 0 for the first try of a request, 1 for its first retry, ...
    failure: str | None  # why this try gave no body: a reason and a message; None for a 200


Trace = Callable[[Try], None]


class Budget(Protocol):
    async def acquire(self, deadline: float) -> None:
        """Wait until a request may be sent; raise SourceFailed if that is after `deadline`."""

    def pause(self, seconds: float) -> None:
        """The API asked to slow down: no request from anyone for `seconds`."""


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
        workspace: str | None = None,
        trace: Trace | None = None,
    ) -> bytes:
        """The 200 body of one GET of `path` (from the API root), after retries; SourceFailed otherwise.

        `deadline` is event-loop time, read anew before each try (a listing's deadline
        grows when a later scrape joins it). `trace`, when given, is told every try.
        """
        # What the debug page's log shows as sent; made only for it (the client makes its own).
        sent = (f"{path}?{urlencode(params)}" if params else path) if trace is not None else ""
        url = f"{self.api.base_url}{path}"
        headers = {
            **self._headers,
            # Read at every request: a key file rotated on disk is used from the next request on.
            **auth_headers(credentials.type, credentials.value.reveal()),
        }
        workspace = workspace or self.api.workspace_id
        if workspace:
            headers[WORKSPACE_HEADER] = workspace
        loop = asyncio.get_running_loop()
        retries = 0
        while True:
            if loop.time() >= deadline():
                raise SourceFailed("deadline", "not finished before the scrape deadline")
            if self.budget is not None:
                await self.budget.acquire(deadline())
            started = loop.time()
            try:
                reply = await self.client.get(url, params, headers, self.api.request_timeout_seconds, pool)
            except TransportFailure as exc:
                count(exc.code)
                failure = SourceFailed(exc.reason, str(exc))
                if trace is not None:
                    trace(Try(sent, exc.code, 0, loop.time() - started, "", retries, f"{exc.reason}: {exc}"))
                if exc.reason not in ("timeout", "connection"):  # a body too large or malformed: no retry
                    raise failure from None
                delay = self._backoff(retries)
            except asyncio.CancelledError:  # the deadline cut this request short
                count("timeout")
                if trace is not None:
                    trace(Try(sent, "timeout", 0, loop.time() - started, "", retries, "deadline: cut short"))
                raise
            else:
                count(str(reply.status))
                if reply.status == 200:
                    if trace is not None:
                        trace(self._try(sent, reply, loop.time() - started, retries, None))
                    return reply.body
                failure = self._http_failure(reply.status, reply.body, reply.headers)
                if trace is not None:
                    trace(self._try(sent, reply, loop.time() - started, retries, failure))
                asked = retry_after(reply.headers, self.wall_clock())
                delay = asked if asked is not None else self._backoff(retries)
                if self.budget is not None and (reply.status == 429 or asked is not None):
                    self.budget.pause(delay)  # the account, not this request, is asked to slow down
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

    def _try(
        self, sent: str, reply: Reply, seconds: float, attempt: int, failure: SourceFailed | None
    ) -> Try:
        request_id = self.redactor.clean(reply.headers.get(REQUEST_ID_HEADER, ""), 80)
        why = None if failure is None else f"{failure.reason}: {failure}"
        return Try(sent, str(reply.status), len(reply.body), seconds, request_id, attempt, why)

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
