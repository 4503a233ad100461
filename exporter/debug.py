"""The debug page: `/probe?environment_id=ENV&debug=true`, for the operator who was just paged.

blackbox_exporter's `?debug=true` shows how one probe went; this shows how one listing
went and what in the environment needs attention. The page lists the environment now
and answers, in this order:

1. the listing's log: every upstream request (path and query, status, bytes, duration,
   `request-id`, which retry it was, why it failed), then each source's outcome;
2. the metrics the probe would return, from that listing;
3. the environment's effective settings, each credential shown only by where it comes
   from, never the key;
4. the work items that need attention: the longest-waiting `queued` items, the
   `starting`/`active`/`stopping` items whose heartbeat is older than 90 s, and those
   that never heartbeated, oldest first, at most `debug_items` of each kind. Each line
   has the work id, the session id, the state, its ages and its breakdown metadata.

The items are chosen page by page (`Attention`, a bounded heap per kind), so memory stays
three times `debug_items` however many items the environment has. Nothing of `secret` is read.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from .config import Config, Credentials, Environment
from .engine import EnvironmentResult
from .models import HEARTBEAT_STATES, WorkItem
from .retrying import Try
from .sources import Fetch, Source
from .sources.work import WorkSource

DEFAULT_ITEMS = 20
MAX_ITEMS = 1000
STALE_HEARTBEAT_SECONDS = 90.0  # the lease a worker loses without a heartbeat; the alert's threshold

KINDS = {
    "queued": "Queued, waiting longest",
    "stale_heartbeat": f"Heartbeat older than {STALE_HEARTBEAT_SECONDS:g} s",
    "no_heartbeat": "Never heartbeated",
}


class Noted(NamedTuple):
    """One item that needs attention, as the page shows it."""

    since: float  # what it is ranked by: the older, the sooner it is shown
    work_id: str
    session_id: str | None
    state: str
    ages: tuple[tuple[str, float], ...]  # (what, seconds)
    labels: tuple[tuple[str, str], ...]  # breakdown metadata: (key, value)


class Attention:
    """The `limit` oldest items of each kind, chosen page by page in bounded memory."""

    def __init__(self, limit: int, metadata_keys: Sequence[str]):
        self.limit = limit
        self.metadata_keys = metadata_keys
        self._heaps: dict[str, list[tuple[float, int, Noted]]] = {kind: [] for kind in KINDS}
        self._order = itertools.count()
        self.seen = 0

    def add_page(self, items: Iterable[WorkItem], arrived: float) -> None:
        """One page's items; `arrived` is when the page came (what its ages are measured against)."""
        for item in items:
            self.seen += 1
            since = item.state_since
            in_state = None if since is None else ("in state", max(0.0, arrived - since))
            if item.state == "queued" and since is not None:
                self._keep("queued", since, item, (("waiting", max(0.0, arrived - since)),))
            elif item.state in HEARTBEAT_STATES:
                beat = item.latest_heartbeat
                if beat is not None and arrived - beat > STALE_HEARTBEAT_SECONDS:
                    ages = (("heartbeat", arrived - beat), *([in_state] if in_state else []))
                    self._keep("stale_heartbeat", beat, item, ages)
                elif beat is None and "latest_heartbeat_at" not in item.unparseable:
                    self._keep(
                        "no_heartbeat",
                        since if since is not None else 0.0,
                        item,
                        tuple(filter(None, [in_state])),
                    )

    def _keep(self, kind: str, since: float, item: WorkItem, ages: tuple[tuple[str, float], ...]) -> None:
        labels = tuple(
            (key, value) for key, value in zip(self.metadata_keys, item.labels, strict=False) if value
        )
        noted = Noted(since, item.id, item.session, item.state, ages, labels)
        heap = self._heaps[kind]
        heapq.heappush(heap, (-since, next(self._order), noted))  # the youngest on top, to be dropped
        if len(heap) > self.limit:
            heapq.heappop(heap)

    def oldest(self, kind: str) -> list[Noted]:
        return [noted for _, _, noted in sorted(self._heaps[kind], key=lambda entry: (-entry[0], entry[1]))]


class _Watched:
    """The work source, with every page shown to the attention list as well."""

    def __init__(self, source: WorkSource, attention: Attention):
        self.source = source
        self.attention = attention
        self.name = source.name

    def credentials(self, env: Environment) -> Credentials:
        return self.source.credentials(env)

    async def collect(self, env: Environment, fetch: Fetch) -> Any:
        return await self.source.collect(env, fetch, self.attention.add_page)


def watched(sources: Sequence[Source[Any]], attention: Attention) -> list[Source[Any]]:
    """The engine's sources, the work listing's pages shown to `attention` too."""
    return [_Watched(s, attention) if isinstance(s, WorkSource) else s for s in sources]


def settings(env: Environment, config: Config) -> list[tuple[str, str]]:
    """The environment's effective settings; each credential only by kind and where it comes from."""
    api, scrape = config.api, config.scrape
    stats = env.stats_credentials
    return [
        ("environment_id", env.id),
        ("name", env.name),
        ("credentials", _where(env.credentials)),
        ("stats_credentials", _where(stats) if stats is not None else "the listing's"),
        ("workspace_id", env.workspace_id or api.workspace_id or "none"),
        ("api.base_url", api.base_url),
        ("api.anthropic_version", api.anthropic_version),
        ("api.betas", ",".join(api.betas)),
        ("api.page_size", str(api.page_size)),
        ("api.max_pages", str(api.max_pages)),
        ("api.request_timeout_seconds", f"{api.request_timeout_seconds:g}"),
        ("api.max_retries", str(api.max_retries)),
        ("api.max_requests_per_second", f"{api.max_requests_per_second:g}"),
        ("scrape.mode", scrape.mode),
        ("scrape.timeout_seconds", f"{scrape.timeout_seconds:g}"),
        ("scrape.refresh_interval_seconds", f"{scrape.refresh_interval_seconds:g}"),
        ("scrape.clock_skew_seconds", f"{scrape.clock_skew_seconds:g}"),
        ("breakdown.metadata_keys", ",".join(config.breakdown.metadata_keys) or "none"),
    ]


def _where(credentials: Credentials) -> str:
    return f"{credentials.type} from {credentials.source}"


def report(
    env: Environment,
    result: EnvironmentResult,
    tries: Sequence[Try],
    metrics: str,
    settings: Sequence[tuple[str, str]],
    attention: Attention,
) -> str:
    """The page's text."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(result.finished_at))
    out = [f"# Listing of {env.id} ({env.name}), ended {when}, in {result.duration_seconds:.3f}s", ""]
    for t in tries:
        line = f"GET {t.path} -> {t.code}, {t.size} bytes, {t.seconds * 1000:.0f} ms"
        if t.request_id:
            line += f", request-id {t.request_id}"
        if t.attempt:
            line += f", retry {t.attempt}"
        if t.failure:
            line += f", failed: {t.failure}"
        out.append(line)
    if not tries:
        out.append("(no upstream request)")
    out.append("")
    for name in sorted({*result.values, *result.failures}):
        failure = result.failures.get(name)
        out.append(
            f"{name}: " + ("ok" if failure is None else f"failed, {failure.reason}: {failure.message}")
        )
    out += ["", "# Metrics (what /probe returns for this listing)", "", metrics.rstrip("\n"), ""]
    out += ["# Settings", ""]
    width = max(len(key) for key, _ in settings)
    out += [f"{key.ljust(width)}  {value}" for key, value in settings]
    out += [
        "",
        f"# Work items that need attention (at most {attention.limit} of each kind, oldest first; "
        f"{attention.seen} items listed)",
    ]
    for kind, title in KINDS.items():
        noted = attention.oldest(kind)
        out += ["", f"## {title}: {len(noted)}" + (" or more" if len(noted) == attention.limit else "")]
        out += [_item_line(n) for n in noted]
    return "\n".join(out) + "\n"


def _item_line(noted: Noted) -> str:
    ages = ", ".join(f"{what} {_duration(seconds)}" for what, seconds in noted.ages)
    labels = " ".join(f"{key}={value}" for key, value in noted.labels)
    parts = [noted.work_id, f"session {noted.session_id or '-'}", noted.state, ages, labels]
    return "  ".join(part for part in parts if part)


def _duration(seconds: float) -> str:
    """`3725 s (1h02m)`: exact seconds, and a reading of them."""
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.0f} s"
    hours, rest = divmod(whole, 3600)
    reading = f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
    return f"{seconds:.0f} s ({reading})"
