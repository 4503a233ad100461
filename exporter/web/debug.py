"""The debug page: `/probe?environment_id=ENV&debug=true`, for the operator who was just paged.

blackbox_exporter's `?debug=true` shows how one probe went; this shows what in the
environment needs attention and how one listing went. The page answers, in this order:

1. a summary: the state counts and the exact number of items of each kind that needs
   attention;
2. the work items that need attention, one section each: queued longer than the queue-wait
   threshold, heartbeat older than the stale-heartbeat threshold, never heartbeated past
   the lease, stopping longer than the stuck-stopping threshold (the alerts' own
   thresholds), oldest first, at most `debug_items` of each. Each line has the work id,
   the session id, the state, its ages and its breakdown metadata;
3. the listing's log: every upstream request (path and query, status, bytes, duration,
   `request-id`, which retry it was, why it failed), then each source's outcome;
4. the metrics the probe would return, from that listing;
5. the environment's effective settings, each credential shown only by where it comes
   from, never the key.

The items are chosen by the listing itself (`aggregate.Attention`, a bounded heap per kind),
so a debug page can join a listing in flight and still show them; memory stays four times
`debug_items` however many items the environment has. Nothing of `secret` is read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import fields

from exporter.api.codec import KNOWN_STATES
from exporter.api.requests import Try
from exporter.config.schema import Config, Credentials, Environment, Thresholds
from exporter.endpoints import PRIMARY
from exporter.folds.work import (
    ATTENTION_KINDS,
    NO_HEARTBEAT,
    QUEUED,
    STALE_HEARTBEAT,
    STUCK_STOPPING,
    Attention,
    Noted,
    WorkSummary,
)
from exporter.running.engine import Examined

DEFAULT_ITEMS = 20
MAX_ITEMS = 1000


def titles(thresholds: Thresholds) -> dict[str, str]:
    """Each kind of attention's section title, with the threshold that decides it."""
    return {
        QUEUED: f"Queued longer than {thresholds.queue_wait_too_long:g} s",
        STALE_HEARTBEAT: f"Heartbeat older than {thresholds.stale_heartbeat:g} s",
        NO_HEARTBEAT: f"Never heartbeated, in state longer than {thresholds.starting_without_heartbeat:g} s",
        STUCK_STOPPING: f"Stopping longer than {thresholds.stuck_stopping:g} s",
    }


def settings(env: Environment, config: Config) -> list[tuple[str, str]]:
    """The environment's effective settings; each credential only by kind and where it comes from."""
    api, scrape, limits = config.api, config.scrape, config.thresholds
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
        *((f"thresholds.{f.name}", f"{getattr(limits, f.name):g}") for f in fields(limits)),
    ]


def _where(credentials: Credentials) -> str:
    return f"{credentials.type} from {credentials.source}"


def report(
    env: Environment,
    examined: Examined,
    metrics: str,
    settings: Sequence[tuple[str, str]],
    thresholds: Thresholds,
    shown: int,
    clean: Callable[[str, int], str],
) -> str:
    """The page's text; at most `shown` items of each kind needing attention. `clean` scrubs upstream
    text (the request ids) of keys and unprintable characters."""
    result = examined.result
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(result.finished_at))
    joined = " (joined a listing already in flight)" if examined.joined else ""
    out = [f"# {env.id} ({env.name}): listing ended {when}, in {result.duration_seconds:.3f}s{joined}", ""]
    summary = result.values.get(PRIMARY.name)
    if isinstance(summary, WorkSummary):
        out += _attention(summary, thresholds, examined.attention, shown)
    else:
        failure = result.failures.get(PRIMARY.name)
        why = f"{failure.reason}: {failure.message}" if failure else "no result"
        out += [f"## Summary: the work listing failed ({why}); nothing to show of its items", ""]
    out += ["# Listing log", ""]
    log = examined.tries
    out += [_try_line(t, clean) for t in log.first]
    if log.omitted:
        out.append(f"... {log.omitted} more requests, not kept ...")
    out += [_try_line(t, clean) for t in log.last]
    if not log.total:
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
    return "\n".join(out) + "\n"


def _attention(summary: WorkSummary, thresholds: Thresholds, kept: int, shown: int) -> list[str]:
    attention: Attention = summary.attention
    states = ", ".join(f"{state} {summary.items.get(state, 0)}" for state in KNOWN_STATES)
    others = sorted(state for state in summary.items if state not in KNOWN_STATES)
    states += "".join(f", {state} {summary.items[state]}" for state in others)
    out = ["## Summary", "", f"items: {sum(summary.items.values())} ({states})"]
    sections = titles(thresholds)
    for kind in ATTENTION_KINDS:
        out.append(f"{sections[kind]}: {attention.counts[kind]}")
    for kind in ATTENTION_KINDS:
        count = attention.counts[kind]
        noted = attention.oldest(kind)[:shown]
        listed = f", the oldest {len(noted)} listed" if len(noted) < count else ""
        out += ["", f"## {sections[kind]}: {count}{listed}"]
        if len(noted) < min(count, shown) and kept < shown:  # a listing in flight kept fewer
            out.append(f"(the listing joined kept the oldest {kept} of each kind)")
        out += [_item_line(n) for n in noted]
    return [*out, ""]


def _try_line(t: Try, clean: Callable[[str, int], str]) -> str:
    line = f"GET {t.target} -> {t.code}, {t.size} bytes, {t.seconds * 1000:.0f} ms"
    if t.request_id:
        line += f", request-id {clean(t.request_id, 80)}"
    if t.attempt:
        line += f", retry {t.attempt}"
    if t.failure:
        line += f", failed: {t.failure}"
    return line


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
