"""The ASGI application behind every endpoint.

A scrape takes the current runtime, checks the whole request first (format by
`Accept`, gzip by `Accept-Encoding`, the query: `negotiate.py`), computes its
deadline from Prometheus's `X-Prometheus-Scrape-Timeout-Seconds` (defensively:
garbage, negative, NaN, infinite or absurdly large values fall back to
`scrape.timeout_seconds`), asks the refresh policy for results by then, and renders
them (`exposition.py`, `name[]` filters included). Only a request that is valid
whole starts a listing; a `name[]` filter that asks for no per-environment family
lists nothing.

Nothing upstream can make this answer anything but 200: failures are in the
results. An exception here is the exporter's own bug; it is logged with its
traceback and answered with a plain 500.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry

from exporter.api.codec import KNOWN_STATES
from exporter.config.schema import Environment, ScrapeConfig
from exporter.folds.work import ATTENTION_ITEMS
from exporter.metrics.exposition import Exposition, exposed_name
from exporter.metrics.formats import FORMATS, TEXT
from exporter.results import EnvironmentResult
from exporter.running.engine import Busy
from exporter.running.reload import Reloader, ReloadState, Runtime
from exporter.running.store import ResultStore
from exporter.web import debug, pages
from exporter.web.negotiate import accepts_gzip, choose_format, prefers_html

log = logging.getLogger("exporter.http")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

HTML = ("Content-Type", "text/html; charset=utf-8")
# docs/runbooks.md as a page (made by scripts/runbooks.py), served at /docs/runbooks: an alert's
# runbook_url can point at the exporter itself.
RUNBOOKS = (importlib.resources.files("exporter.web") / "runbooks.html").read_bytes()
MIN_BUDGET_SECONDS = 0.1
LANDING_PAGE_ENVIRONMENTS = 500  # rows; past that, /metrics and the dashboards are the place
# Prometheus caps a scrape timeout at the scrape interval; anything past an hour is not a timeout.
MAX_SCRAPE_TIMEOUT_SECONDS = 3600.0


def scrape_budget(header: str | None, scrape: ScrapeConfig) -> float:
    """Seconds this scrape may take: Prometheus's timeout less our offset, or the configured default."""
    try:  # ASCII only: float() also reads other scripts' digits
        timeout = float(header) if header is not None and header.isascii() else math.nan
    except ValueError:  # not a number at all
        timeout = math.nan
    if not (0 < timeout <= MAX_SCRAPE_TIMEOUT_SECONDS):  # also false for NaN
        return scrape.timeout_seconds
    return max(timeout - scrape.timeout_offset_seconds, MIN_BUDGET_SECONDS)


class ExporterApp:
    def __init__(
        self,
        reloader: Reloader,
        registry: CollectorRegistry,
        exposition: Exposition,
        store: ResultStore,
        reload_state: ReloadState,
        *,
        clean: Callable[[str, int], str],
        demo: bool = False,
        external_url: str = "",
        clock: Callable[[], float] = time.time,
    ):
        self.reloader = reloader
        self.registry = registry  # the exporter's own metrics: shown on /metrics only
        self.exposition = exposition  # renders one scrape's results
        self.store = store  # the latest result per environment, for the landing page
        self.reload_state = reload_state  # the last reload's outcome, for the landing page
        self.clean = clean  # scrubs upstream text of every key in use, for the debug page
        self.demo = demo
        self.links = pages.Links(external_url)  # absolute links under --web.external-url
        self.clock = clock  # the landing page's "12 s ago"
        # A name[] filter that asks only for these lists nothing upstream.
        self.own_families = tuple(family.name for family in registry.collect())
        self._renderer: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Render each new result as the store receives it, ahead of the scrape that will show it (in
        background mode a scrape then only splices): asked for here, on the web side; the listings
        never render."""
        loop = asyncio.get_running_loop()
        self._renderer = loop.create_task(self.exposition.keep_rendered(self.store), name="render ahead")

    async def aclose(self) -> None:
        if self._renderer is not None:
            self._renderer.cancel()
            await asyncio.gather(self._renderer, return_exceptions=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan and websockets are not served
            return
        started: list[bool] = []

        async def tracked(message: MutableMapping[str, Any]) -> None:
            started.append(True)
            await send(message)

        try:
            with self.reloader.use() as runtime:
                await self._route(runtime, scope, receive, tracked)
        except Exception:  # our own bug; upstream trouble never gets here
            log.exception("internal error answering a request", extra={"path": scope.get("path", "")})
            if not started:  # a half-sent answer cannot be replaced; uvicorn closes the connection
                await _reply(send, scope, 500, "Internal error; see the exporter's log.\n")

    async def _route(self, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        auth = runtime.web.basic_auth if runtime.web else None
        if auth is not None:
            header = headers.get("authorization")
            # bcrypt is slow on purpose: off the event loop, unless this header was verified before.
            if not (auth.remembered(header) or await asyncio.to_thread(auth.allows, header)):
                await _reply(
                    send,
                    scope,
                    401,
                    "Unauthorized\n",
                    [("WWW-Authenticate", 'Basic realm="anthropic-work-exporter"')],
                )
                return
        path, method = scope["path"], scope["method"]
        if path == "/-/reload":
            if method not in ("POST", "PUT"):
                await _reply(send, scope, 405, "Use POST to reload the config.\n", [("Allow", "POST, PUT")])
                return
            problems = await self.reloader.reload()
            if problems:
                await _reply(
                    send,
                    scope,
                    500,
                    "Reload refused; the running config stays:\n" + "\n".join(problems) + "\n",
                )
            else:
                await _reply(send, scope, 200, "Reloaded.\n")
            return
        if method not in ("GET", "HEAD"):
            await _reply(send, scope, 405, "Method not allowed.\n", [("Allow", "GET, HEAD")])
            return
        if path == "/metrics":
            await self._metrics(
                runtime, scope, receive, send, runtime.targets.environments(), headers, own=True
            )
        elif path == "/probe":
            await self._probe(runtime, scope, receive, send, headers)
        elif path == "/-/healthy":
            await _reply(send, scope, 200, "Healthy\n")
        elif path == "/-/ready":
            await _reply(send, scope, 200, "Ready\n")
        elif path == "/":
            page = self._landing_page(runtime.targets.environments())
            await _reply(send, scope, 200, page, [HTML])
        elif path == "/docs/runbooks":
            await _reply(send, scope, 200, RUNBOOKS, [HTML])
        else:
            await _reply(send, scope, 404, "Not found. Try /metrics or /probe.\n")

    async def _probe(
        self, runtime: Runtime, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
    ) -> None:
        query = _query(scope)
        ids = query.get("environment_id", [])
        if len(ids) != 1 or not ids[0]:
            await _reply(
                send, scope, 400, "400: give exactly one environment_id, e.g. /probe?environment_id=env_...\n"
            )
            return
        env = runtime.targets.find(ids[0])
        owner = runtime.targets.elsewhere(ids[0]) if env is None else None
        if owner is not None:
            await _reply(
                send,
                scope,
                400,
                f"400: environment_id {ids[0]} is watched by {owner}, not by this exporter "
                f"({runtime.targets.here()}): ask that one\n",
            )
            return
        if env is None:
            await _reply(
                send,
                scope,
                400,
                f"400: environment_id {ids[0][:200]!r} is not watched by this exporter: only environments "
                "in its config, or discovered, in its shard can be probed\n",
            )
            return
        debug_page = _flag(query, "debug")
        items = _whole_number(query, "debug_items", debug.DEFAULT_ITEMS, 1, debug.MAX_ITEMS)
        for problem in (debug_page, items):
            if isinstance(problem, str):
                await _reply(send, scope, 400, f"400: {problem}\n")
                return
        if not debug_page:
            await self._metrics(runtime, scope, receive, send, (env,), headers, own=False)
            return
        if scope["method"] == "HEAD":
            await _reply(send, scope, 200, "")
            return
        assert isinstance(items, int)
        budget = scrape_budget(headers.get("x-prometheus-scrape-timeout-seconds"), runtime.config.scrape)
        deadline = asyncio.get_running_loop().time() + budget
        try:
            examined = await runtime.engine.examine(env, deadline, max(items, ATTENTION_ITEMS))
        except Busy as busy:  # the debug pages' own pool is full: never a scrape's slot
            retry = str(math.ceil(busy.retry_after))
            await _reply(send, scope, 429, f"429: {busy}\n", [("Retry-After", retry)])
            return
        metrics = await self.exposition.render([examined.result], [env.id], None, fmt=TEXT, gzip=False)
        settings = debug.settings(env, runtime.config)
        thresholds = runtime.config.thresholds
        report = debug.examine(env, examined, metrics.body.decode(), settings, thresholds, items, self.clean)
        if prefers_html(headers.get("accept")):
            await _reply(send, scope, 200, debug.page(report, self.links), [HTML])
        else:
            await _reply(send, scope, 200, debug.text(report))

    async def _metrics(
        self,
        runtime: Runtime,
        scope: Scope,
        receive: Receive,
        send: Send,
        environments: Sequence[Environment],
        headers: dict[str, str],
        own: bool,
    ) -> None:
        fmt = choose_format(headers.get("accept"))
        if fmt is None:  # checked before anything is listed
            offered = ", ".join(f.content_type for f in FORMATS)
            await _reply(send, scope, 406, f"Not acceptable: this endpoint answers in {offered}.\n")
            return
        if scope["method"] == "HEAD":  # the headers a GET would have, without listing anything
            await _reply(send, scope, 200, "", [("Content-Type", fmt.content_type)])
            return
        gzip = accepts_gzip(headers.get("accept-encoding"))
        names = _query(scope).get("name[]")
        results: list[EnvironmentResult] = []
        if not names or not all(n.startswith(self.own_families) for n in names):
            budget = scrape_budget(headers.get("x-prometheus-scrape-timeout-seconds"), runtime.config.scrape)
            deadline = asyncio.get_running_loop().time() + budget
            results = await runtime.policy.results(environments, deadline)
        response = await self.exposition.render(
            results,
            [env.id for env in environments],
            self.registry if own else None,
            fmt=fmt,
            gzip=gzip,
            names=names,
        )
        extra = [("Content-Encoding", "gzip")] if response.gzipped else []
        await _reply(send, scope, 200, response.body, [("Content-Type", response.content_type), *extra])

    def _landing_page(self, environments: Sequence[Environment]) -> str:
        listed = [(env, self.store.summary(env.id)) for env in environments[:LANDING_PAGE_ENVIRONMENTS]]
        families = [
            pages.Family(exposed_name(m), m.type, m.documentation)
            for m in [*self.exposition.families(), *self.registry.collect()]
        ]
        return pages.landing(
            listed,
            len(environments) - len(listed),
            KNOWN_STATES,
            families,
            self.reload_state,
            self.clock(),
            self.links,
            demo=self.demo,
        )


def _query(scope: Scope) -> dict[str, list[str]]:
    """The query's parameters; percent-escapes that are no UTF-8 become U+FFFD, never an error."""
    return parse_qs(scope.get("query_string", b"").decode("latin-1"))


def _whole_number(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int | str:
    """The parameter as a whole number from `low` to `high`, or the problem naming it.

    ASCII digits only: `str.isdigit` takes "²" and "①", which `int` then refuses."""
    raw = query.get(name, [None])[-1]
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and low <= int(raw) <= high):
        return f"{name} must be a whole number from {low} to {high}, in ASCII digits"
    return int(raw)


def _flag(query: dict[str, list[str]], name: str) -> bool | str:
    """The parameter as true (`true`, `1`) or false (`false`, `0`, absent), or the problem naming it."""
    raw = query.get(name, ["false"])[-1].lower()
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    return f"{name} must be true or false"


def _headers(scope: Scope) -> dict[str, str]:
    """Lower-cased names; a header sent more than once is one comma-separated list, as HTTP has it."""
    out: dict[str, str] = {}
    for k, v in scope.get("headers", []):
        name, value = k.decode("latin-1").lower(), v.decode("latin-1")
        out[name] = f"{out[name]},{value}" if name in out else value
    return out


async def _reply(
    send: Send, scope: Scope, status: int, body: str | bytes, headers: list[tuple[str, str]] | None = None
) -> None:
    data = body.encode() if isinstance(body, str) else body
    headers = headers or [("Content-Type", "text/plain; charset=utf-8")]
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers = [*headers, ("Content-Type", "text/plain; charset=utf-8")]
    raw = [(k.lower().encode(), v.encode()) for k, v in headers]
    if body or scope.get("method") != "HEAD":
        raw.append((b"content-length", str(len(data)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
