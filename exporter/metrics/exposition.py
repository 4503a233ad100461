"""One scrape's exposition, with each environment's lines rendered once per result.

A replica of a big fleet serves tens of thousands of series; rendering them all
with prometheus-client on every scrape takes hundreds of milliseconds (about 7 µs
a sample), yet in background mode, or with `min_interval_seconds`, an
environment's numbers change only when a new listing of it ends. So each
environment's families are rendered by prometheus-client's own encoders, on their
own, once per (result, format), and a scrape splices the rendered pieces together
family by family. The splice gives exactly the bytes prometheus-client would
give for all of them at once (`tests/test_exposition.py` compares the two).

A new result is rendered ahead of the scrape that will show it (`prepare`), in the
formats scrapes have asked for, so that a scrape in background mode only splices:
rendering costs about 10 µs a sample in the text format and 18 µs in OpenMetrics, most
of it prometheus-client escaping label values. Results flow one way: the engine writes
them into the `ResultStore` and never renders; the web side runs `keep_rendered`, which
reads the store's feed of changed environments and prepares each. Only the formats of
`formats.FORMATS` exist, so what is kept cannot grow with what clients send.

Rendering one environment is a step of that environment (`isolation.Boundary`):
if it raises, that environment is shown failed (`internal`, logged once with the
traceback) and the others are untouched.

What changes between listings (the request and failure counters) and the
exporter's own registry are rendered on every scrape, the counters a slice of
environments at a time. Every long walk hands the event loop back now and then
(`pace.Pace`), gzip included, so a scrape of 20,000 environments never holds it.

A `name[]` filter is answered by prometheus-client's restricted registry over the
same collectors, uncached: it is for small answers.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter.metrics.formats import Format
from exporter.pace import Pace
from exporter.results import EnvironmentResult
from exporter.running.isolation import Boundary
from exporter.running.store import ResultStore

log = logging.getLogger("exporter.exposition")

# Level 1: a fleet's 2 MB compresses in 5 ms to 105 kB; level 9 (gzip's default) takes
# 50 ms for 80 kB. A scrape waits on the CPU, not on the bytes.
GZIP_LEVEL = 1
GZIP_SLICE = 256 * 1024  # bytes compressed between two looks at the event loop
LIVE_SLICE = 500  # environments whose counters are rendered in one go
_EOF = b"# EOF\n"
_BLOCK = re.compile(rb"^(?=# HELP )", re.MULTILINE)

# The per-environment families of some results (of one, to cache; of none, for the headers).
PerEnvironment = Callable[[Sequence[EnvironmentResult]], list[Collector]]
# Families rendered on every scrape, for the environments of that scrape.
Live = Callable[[Sequence[str]], list[Collector]]
# What a rendered environment depends on besides its result (compared by identity).
Version = Callable[[str], object]
# (header, samples) per family. A tuple of bytes only: the garbage collector stops tracking it,
# so 20,000 environments' rendered lines cost no full-collection time.
Families = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class Response:
    content_type: str
    body: bytes
    gzipped: bool


@dataclass(slots=True)
class _Rendered:
    """An environment's rendered families, per format asked for (content type, families): a tuple of
    strings and bytes, which the garbage collector does not track, rather than a dict."""

    result: EnvironmentResult
    version: object
    formats: tuple[tuple[str, Families], ...] = ()


class Exposition:
    """Renders scrapes; long-lived, holding each environment's rendered families."""

    def __init__(self, per_environment: PerEnvironment, live: Live, version: Version, boundary: Boundary):
        self.per_environment = per_environment
        self.live = live
        self.version = version
        self.boundary = boundary
        self._rendered: dict[str, _Rendered] = {}
        self._empty: dict[str, Families] = {}
        self._formats: dict[str, Format] = {}  # the formats scrapes have asked for, by content type
        self._excluded: frozenset[str] = frozenset()  # families left out (metrics.exclude)

    def exclude(self, names: frozenset[str]) -> None:
        """Leave these families (by their exposed names) out of every scrape from now on; what was
        rendered with another choice is dropped, to be rendered again when asked."""
        if names != self._excluded:
            self._excluded = names
            self._rendered.clear()
            self._empty.clear()

    async def render(
        self,
        results: Sequence[EnvironmentResult],
        environment_ids: Sequence[str],
        own: CollectorRegistry | None,
        *,
        fmt: Format,
        gzip: bool,
        names: list[str] | None = None,
    ) -> Response:
        """The body in `fmt`, gzipped if asked."""
        pace = Pace()
        if names:
            restricted = self._registry(results, environment_ids, own).restricted_registry(names)
            body = fmt.encoder(restricted)  # type: ignore[arg-type]  # it is a registry for the encoders
        else:
            self._formats.setdefault(fmt.content_type, fmt)
            pieces = [self._empty_families(fmt)]
            for result in results:
                pieces.append(self._families(result, fmt))
                await pace()
            for at in range(0, len(environment_ids), LIVE_SLICE):
                live = _Kept(self.live(environment_ids[at : at + LIVE_SLICE]), self._excluded)
                pieces.append(_split(fmt.encoder(live)))  # type: ignore[arg-type]  # has collect()
                await pace()
            tail = fmt.encoder(own) if own is not None else (_EOF if fmt.openmetrics else b"")
            body = await _splice(pieces, pace) + tail  # OpenMetrics's `# EOF` comes last, from the tail
        if gzip:
            return Response(fmt.content_type, await _gzip(body, pace), True)
        return Response(fmt.content_type, body, False)

    def families(self) -> list[Metric]:
        """Every per-environment family, empty: names, types and help texts (for the landing page)."""
        every = _Kept([*self.per_environment([]), *self.live([])], self._excluded, nonempty=False)
        return list(every.collect())

    def prepare(self, result: EnvironmentResult) -> None:
        """Render a new result now, in every format asked for, so that the next scrape only splices it."""
        for fmt in self._formats.values():
            self._families(result, fmt)

    async def keep_rendered(self, store: ResultStore) -> None:
        """Prepare every result the store receives, as it does; runs until cancelled.

        Rendering one environment is already its own boundary (`_render`); anything else that
        raises here is our bug, logged, and the renderer goes on: a scrape renders what it
        finds unrendered anyway."""
        while True:
            changed = await store.changed()
            pace = Pace()
            try:
                for env_id in changed:
                    result = store.latest(env_id)
                    if result is not None:
                        self.prepare(result)
                    await pace()
            except Exception:  # our own bug: the next scrape renders what is left
                log.exception("rendering results ahead of the scrapes failed; going on")

    def forget_all_but(self, environment_ids: set[str]) -> None:
        """Drop what is kept for environments no longer watched."""
        for env_id in set(self._rendered) - environment_ids:
            del self._rendered[env_id]

    def _families(self, result: EnvironmentResult, fmt: Format) -> Families:
        env_id = result.environment.id
        version = self.version(env_id)
        rendered = self._rendered.get(env_id)
        if rendered is None or rendered.result is not result or not _same(rendered.version, version):
            rendered = self._rendered[env_id] = _Rendered(result, version)
        for content_type, families in rendered.formats:
            if content_type == fmt.content_type:
                return families
        families = self._render(result, fmt)
        rendered.formats = (*rendered.formats, (fmt.content_type, families))
        return families

    def _render(self, result: EnvironmentResult, fmt: Format) -> Families:
        """One environment's families: the boundary of its render step."""
        try:
            return _split(fmt.encoder(_Kept(self.per_environment([result]), self._excluded)))  # type: ignore[arg-type]
        except Exception as exc:  # our own bug, in this environment's numbers only: it is shown failed
            failure = self.boundary.failure(result.environment, "render", exc)
        failed = EnvironmentResult(
            result.environment, result.duration_seconds, result.finished_at, {}, {"render": failure}
        )
        try:
            return _split(fmt.encoder(_Kept(self.per_environment([failed]), self._excluded)))  # type: ignore[arg-type]
        except Exception:  # the failure itself will not render either: leave the environment out
            return ()  # (its traceback was logged just above)

    def _empty_families(self, fmt: Format) -> Families:
        """Every family's header in order, so that families no environment has still appear."""
        families = self._empty.get(fmt.content_type)
        if families is None:
            empty = _registry(
                [_Kept([*self.per_environment([]), *self.live([])], self._excluded, nonempty=False)]
            )
            families = self._empty[fmt.content_type] = _split(fmt.encoder(empty))
        return families

    def _registry(
        self,
        results: Sequence[EnvironmentResult],
        environment_ids: Sequence[str],
        own: CollectorRegistry | None,
    ) -> CollectorRegistry:
        """All of a scrape's families in one registry, for prometheus-client's own filtering."""
        # auto_describe: the long-lived registry has no describe(), and name[] needs its names.
        registry = CollectorRegistry(auto_describe=True)
        collectors = [*self.per_environment(results), *self.live(environment_ids)]
        registry.register(_Kept(collectors, self._excluded, nonempty=False))
        if own is not None:
            registry.register(own)
        return registry


def _same(kept: object, now: object) -> bool:
    """The same version: the same objects (a tuple of them, element by element), never compared by value."""
    if isinstance(kept, tuple) and isinstance(now, tuple):
        return len(kept) == len(now) and all(a is b for a, b in zip(kept, now, strict=True))
    return kept is now


def _registry(collectors: Iterable[Collector]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return registry


class _Kept:
    """The families of some collectors a scrape shows, for an encoder (which only calls `collect`):
    not those `metrics.exclude` names, and (`nonempty`) only those with samples.

    One environment's piece needs no empty family: every family's header comes once,
    from the piece of no environment. Leaving them out (and the registry, which would
    ask every collector for its names first) makes an environment's render about four
    times cheaper, most for one that failed and so has a few samples only.
    """

    def __init__(self, collectors: Iterable[Collector], excluded: frozenset[str], nonempty: bool = True):
        self.collectors = collectors
        self.excluded = excluded
        self.nonempty = nonempty

    def collect(self) -> Iterable[Metric]:
        for collector in self.collectors:
            for family in collector.collect():
                if self.nonempty and not family.samples:
                    continue
                if self.excluded and exposed_name(family) in self.excluded:
                    continue
                yield family


def exposed_name(family: Metric) -> str:
    """The name a scrape shows: a counter's samples end in `_total`."""
    return f"{family.name}_total" if family.type == "counter" else family.name


def _split(text: bytes) -> Families:
    """(header, samples) per family block; a block starts at a `# HELP` line.

    Sample lines never start with `#`, and label values and help texts escape
    newlines, so a line that starts with `# HELP ` always opens a block.
    """
    families = []
    for block in _BLOCK.split(text.removesuffix(_EOF))[1:]:
        end = block.index(b"\n") + 1  # the HELP line
        while block.startswith(b"# ", end):  # TYPE and UNIT
            end = block.index(b"\n", end) + 1
        families.append((block[:end], block[end:]))
    return tuple(families)


async def _splice(pieces: Iterable[Families], pace: Pace) -> bytes:
    """Each family's header once, then its samples from every piece, in the pieces' order.

    A piece may have a family the ones before it lack (the text format writes a
    gauge histogram's `_gcount` and `_gsum` only when there are samples): it goes
    right after the family that precedes it in that piece, where a single render
    would have put it.
    """
    samples: dict[bytes, list[bytes]] = {}
    order: list[bytes] = []
    for families in pieces:
        previous: bytes | None = None
        for header, lines in families:
            bucket = samples.get(header)
            if bucket is None:
                bucket = samples[header] = []
                order.insert(0 if previous is None else order.index(previous) + 1, header)
            bucket.append(lines)
            previous = header
        await pace()
    return b"".join(header + b"".join(samples[header]) for header in order)


async def _gzip(body: bytes, pace: Pace) -> bytes:
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = []
    for at in range(0, len(body), GZIP_SLICE):
        out.append(compressor.compress(body[at : at + GZIP_SLICE]))
        await pace()
    out.append(compressor.flush())
    return b"".join(out)
