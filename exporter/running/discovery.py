"""Discovery: every self-hosted, unarchived environment `GET /v1/environments` lists.

Runs every `discovery.refresh_interval_seconds` (and once at start), through the
same retrying GET as every upstream request (the budget, retries, timeouts), with
the discovery credentials (an API key: the listing is account-wide), but without
the listing machinery: it is not an environment. A failing discovery keeps the last
known set, says so in `anthropic_work_discovery_success`, and is logged once until
it recovers. An environment listed as archived (or not self-hosted) stops being watched
at once; one missing from an answer stays watched, with its series and counters, until it
has been missing from `discovery.unwatch_after_missing` consecutive successful discoveries
(default 3), so one answer that leaves it out (a page skipped, a hiccup upstream) does not
make the fleet's series vanish and their counters start again. Then what is kept for it
is dropped.

Ids enter here, so they are checked here: an id that is not safe as one URL path
segment (`models.environment_id_problem`), or one listed twice, is skipped, counted
in `anthropic_work_discovery_invalid_environments`, and logged when the set of
skipped ids changes, not on every discovery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing

from exporter.api.codec import (
    ENVIRONMENTS_PATH,
    INCLUDE_ARCHIVED_PARAM,
    EnvironmentsPage,
    ListedEnvironment,
    UpstreamFormatError,
    parse_environments_page,
)
from exporter.api.pages import Pages
from exporter.api.requests import RetryingGet
from exporter.config.schema import DiscoveryConfig
from exporter.redact import Redactor
from exporter.results import SourceFailed
from exporter.running.targets import DiscoveryState
from exporter.running.timer import Timer

log = logging.getLogger("exporter.discovery")

PAGE_SIZE = 100
MAX_PAGES = 1000
ARCHIVED_LEFT_OUT = {INCLUDE_ARCHIVED_PARAM: "false"}
TIMEOUT_SECONDS = 60.0  # one discovery, every page of it
DISCOVERY_POOL = "/discovery"  # its connections: no environment id has a slash


class Discovery(Timer):
    def __init__(
        self,
        config: DiscoveryConfig,
        requests: RetryingGet,
        state: DiscoveryState,
        redactor: Redactor,
        on_change: Callable[[], Awaitable[object]],
        wall_clock: Callable[[], float] = time.time,
        *,
        path: str = ENVIRONMENTS_PATH,
        decode: Callable[[bytes], EnvironmentsPage] = parse_environments_page,
    ):
        self.config = config
        self.requests = requests
        self.state = state
        self.redactor = redactor
        self.on_change = on_change  # the watched set changed: drop what is kept for the gone ones
        self.wall_clock = wall_clock
        self.path, self.decode = path, decode  # the endpoint's: declared once, in endpoints.environments
        self.pages = Pages(PAGE_SIZE, MAX_PAGES, "the account has more environments than discovery lists")

    def start(self) -> None:
        self._run(self._loop(), "discovery")

    async def _loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # our own bug: logged, the last known set stays, discovery goes on
                self.state.succeeded = False
                log.exception("discovery failed unexpectedly; watching the environments known so far")
            await asyncio.sleep(self.config.refresh_interval_seconds)

    async def refresh(self) -> bool:
        """One discovery; True if it worked. The last known set stays when it does not."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(TIMEOUT_SECONDS, self.config.refresh_interval_seconds)
        try:
            found, invalid = await self._list(deadline)
        except SourceFailed as exc:
            if self.state.succeeded is not False:
                log.warning(
                    "discovery failed; watching the environments known so far",
                    extra={
                        "reason": exc.reason,
                        "error": self.redactor.clean(str(exc)),
                        "known": len(self.state.environments),
                    },
                )
            self.state.succeeded = False
            return False
        if self.state.succeeded is False:
            log.info("discovery recovered")
        if invalid != self.state.invalid and invalid:
            log.warning(
                "discovery skipped environment ids that cannot be used safely",
                extra={"skipped": len(invalid), "first": self.redactor.clean("; ".join(invalid[:5]))},
            )
        self.state.invalid = invalid
        found = self._keep_missing(found)
        changed = {e.id: e for e in found} != {e.id: e for e in self.state.environments}
        self.state.environments = found
        self.state.succeeded = True
        self.state.last_success_timestamp = self.wall_clock()
        if changed:
            self.state.generation += 1
            log.info("environments discovered", extra={"environments": len(found)})
            await self.on_change()
        return True

    def _keep_missing(self, found: list[ListedEnvironment]) -> list[ListedEnvironment]:
        """`found`, and the environments watched so far that it leaves out, for as long as they may be."""
        listed = {env.id for env in found}
        kept, missing = list(found), {}
        for env in self.state.environments:
            if env.id in listed or not env.self_hosted or env.archived:
                continue
            misses = self.state.missing.get(env.id, 0) + 1
            if misses < self.config.unwatch_after_missing:
                kept.append(env)
                missing[env.id] = misses
            else:
                log.info(
                    "environment no longer discovered: not watched any more",
                    extra={"environment_id": env.id, "missing_discoveries": misses},
                )
        self.state.missing = missing
        return kept

    async def _list(self, deadline: float) -> tuple[list[ListedEnvironment], list[str]]:
        """Every environment listed, each id once, and why each skipped id was skipped."""
        found: dict[str, ListedEnvironment] = {}
        invalid: list[str] = []

        async def get(params: Mapping[str, str | int]) -> bytes:
            return await self.requests.get(
                self.path,
                params,
                self.config.credentials,
                deadline=lambda: deadline,
                count=self._count,
                pool=DISCOVERY_POOL,
                endpoint="discovery",
            )

        def decode(body: bytes) -> EnvironmentsPage:
            try:
                return self.decode(body)
            except UpstreamFormatError as exc:
                raise SourceFailed(
                    "invalid_response", f"HTTP 200 but not an environment listing: {exc}"
                ) from None

        listing = self.pages.pages(get, decode, lambda page: page.next_page, extra=ARCHIVED_LEFT_OUT)
        async with aclosing(listing):
            async for page in listing:
                invalid += page.invalid
                for env in page.environments:
                    if env.id in found:
                        invalid.append(f"id {env.id!r} listed more than once")
                    else:
                        found[env.id] = env
        return list(found.values()), invalid

    def _count(self, code: str) -> None:
        self.state.requests[code] = self.state.requests.get(code, 0) + 1
