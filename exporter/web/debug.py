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

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

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
from exporter.web import pages

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


ANCHORS = {  # each kind's section id, for links from the summary, the alerts and the runbooks
    QUEUED: "queued-too-long",
    STALE_HEARTBEAT: "stale-heartbeat",
    NO_HEARTBEAT: "without-heartbeat",
    STUCK_STOPPING: "stuck-stopping",
}


@dataclass(frozen=True)
class Section:
    """The items of one kind needing attention: the exact count and the oldest few."""

    anchor: str
    title: str  # with its threshold: "Queued longer than 300 s"
    count: int
    items: list[Noted]
    note: str  # why fewer are listed than asked, or ""


@dataclass(frozen=True)
class Report:
    """What the page says, in its order, whatever it is rendered as (text or HTML)."""

    env: Environment
    heading: str  # "listing ended 2026-...Z, in 0.412s"
    states: list[tuple[str, int]] | None  # None: the work listing failed
    failure: str  # why, when it failed
    sections: list[Section]
    log: list[str]
    outcomes: list[tuple[str, str]]  # (source, "ok" or "failed, reason: message")
    metrics: str
    settings: Sequence[tuple[str, str]]
    queue_backlog: float  # AnthropicWorkQueueBacklog's threshold, beside the queued count


def examine(
    env: Environment,
    examined: Examined,
    metrics: str,
    settings: Sequence[tuple[str, str]],
    thresholds: Thresholds,
    shown: int,
    clean: Callable[[str, int], str],
) -> Report:
    """The page's content; at most `shown` items of each kind needing attention. `clean` scrubs
    upstream text (the request ids) of keys and unprintable characters."""
    result = examined.result
    when = pages.utc(result.finished_at)
    joined = " (joined a listing already in flight)" if examined.joined else ""
    heading = f"listing ended {when}, in {result.duration_seconds:.3f}s{joined}"
    summary = result.values.get(PRIMARY.name)
    states: list[tuple[str, int]] | None = None
    sections: list[Section] = []
    failure = ""
    if isinstance(summary, WorkSummary):
        states = [(state, summary.items.get(state, 0)) for state in KNOWN_STATES]
        states += [
            (state, summary.items[state]) for state in sorted(summary.items) if state not in KNOWN_STATES
        ]
        sections = _sections(summary.attention, thresholds, examined.attention, shown, clean)
    else:
        why = result.failures.get(PRIMARY.name)
        failure = f"{why.reason}: {why.message}" if why else "no result"
    log = examined.tries
    lines = [_try_line(t, clean) for t in log.first]
    if log.omitted:
        lines.append(f"... {log.omitted} more requests, not kept ...")
    lines += [_try_line(t, clean) for t in log.last]
    outcomes = []
    for name in sorted({*result.values, *result.failures}):
        why = result.failures.get(name)
        outcomes.append((name, "ok" if why is None else f"failed, {why.reason}: {why.message}"))
    # The exposition as /probe returns it, but each line made printable: label values carry
    # upstream metadata, and this page goes to terminals.
    shown_metrics = "\n".join(clean(line, len(line) + 1) for line in metrics.splitlines())
    return Report(
        env,
        heading,
        states,
        failure,
        sections,
        lines,
        outcomes,
        shown_metrics,
        settings,
        thresholds.queue_backlog,
    )


def _sections(
    attention: Attention, thresholds: Thresholds, kept: int, shown: int, clean: Callable[[str, int], str]
) -> list[Section]:
    out = []
    named = titles(thresholds)
    for kind in ATTENTION_KINDS:
        count = attention.counts[kind]
        noted = [_cleaned(n, clean) for n in attention.oldest(kind)[:shown]]
        note = ""
        if len(noted) < min(count, shown) and kept < shown:  # a listing in flight kept fewer
            note = f"(the listing joined kept the oldest {kept} of each kind)"
        out.append(Section(ANCHORS[kind], named[kind], count, noted, note))
    return out


def text(report: Report) -> str:
    """The page as plain text, for curl and blackbox-style tooling."""
    env = report.env
    out = [f"# {env.id} ({env.name}): {report.heading}", ""]
    if report.states is None:
        out += [f"## Summary: the work listing failed ({report.failure}); nothing to show of its items", ""]
    else:
        total = sum(n for _, n in report.states)
        states = ", ".join(f"{state} {n}" for state, n in report.states)
        out += ["## Summary", "", f"items: {total} ({states})"]
        out += [f"{s.title}: {s.count}" for s in report.sections]
        for s in report.sections:
            listed = f", the oldest {len(s.items)} listed" if len(s.items) < s.count else ""
            out += ["", f"## {s.title}: {s.count}{listed}"]
            if s.note:
                out.append(s.note)
            out += [_item_line(n) for n in s.items]
        out.append("")
    out += ["# Listing log", "", *(report.log or ["(no upstream request)"]), ""]
    out += [f"{name}: {outcome}" for name, outcome in report.outcomes]
    out += ["", "# Metrics (what /probe returns for this listing)", "", report.metrics.rstrip("\n"), ""]
    out += ["# Settings", ""]
    width = max(len(key) for key, _ in report.settings)
    out += [f"{key.ljust(width)}  {value}" for key, value in report.settings]
    return "\n".join(out) + "\n"


def page(report: Report, links: pages.Links) -> str:
    """The page as HTML, for a browser: the summary first, each kind of attention a section with
    an anchor, the log, metrics and settings after."""
    env, e = report.env, html.escape
    body = [f"<h1>{e(env.name)} <small><code>{e(env.id)}</code></small></h1><p>{e(report.heading)}</p>"]
    body.append('<section id="summary"><h2>Summary</h2>')
    if report.states is None:
        failed = f"The work listing failed: {e(report.failure)}. Nothing to show of its items."
        body.append(f'<p class="failed">{failed}</p>')
    else:
        total = sum(n for _, n in report.states)
        cells = "".join(f"<th>{e(state)}</th>" for state, _ in report.states)
        counts = "".join(
            f'<td class="{"bad" if state == "queued" and n > report.queue_backlog else "n"}">{n}</td>'
            for state, n in report.states
        )
        body.append(
            f"<table class=states><tr><th>items</th>{cells}</tr><tr><td>{total}</td>{counts}</tr></table>"
            f"<p class=hint>Queued above {report.queue_backlog:g} is a backlog "
            "(AnthropicWorkQueueBacklog).</p>"
            "<table class=attention><tr><th>needs attention</th><th>items</th></tr>"
        )
        for s in report.sections:
            mark = "bad" if s.count else "good"
            body.append(
                f'<tr><td><a href="#{s.anchor}">{e(s.title)}</a></td><td class="{mark}">{s.count}</td></tr>'
            )
        body.append("</table>")
    body.append("</section>")
    for s in report.sections:
        listed = f", the oldest {len(s.items)} listed" if len(s.items) < s.count else ""
        body.append(f'<section id="{s.anchor}"><h2>{e(s.title)}: {s.count}{listed}</h2>')
        if s.note:
            body.append(f"<p class=hint>{e(s.note)}</p>")
        if s.items:
            heads = "".join(f"<th>{h}</th>" for h in ("work id", "session id", "state", "ages", "metadata"))
            body.append(f"<table class=items><tr>{heads}</tr>")
            for n in s.items:
                ages = ", ".join(f"{what} {_duration(seconds)}" for what, seconds in n.ages)
                labels = " ".join(f"{key}={value}" for key, value in n.labels)
                body.append(
                    f"<tr><td><code>{e(n.work_id)}</code></td><td><code>{e(n.session_id or '-')}</code></td>"
                    f"<td>{e(n.state)}</td><td>{e(ages)}</td><td>{e(labels)}</td></tr>"
                )
            body.append("</table>")
        elif not s.count:
            body.append("<p class=good>None.</p>")
        body.append("</section>")
    outcomes = "".join(
        f'<li class="{"good" if o == "ok" else "bad"}">{e(name)}: {e(o)}</li>' for name, o in report.outcomes
    )
    log = "\n".join(report.log) or "(no upstream request)"
    body.append(f'<section id="log"><h2>Listing log</h2><pre>{e(log)}</pre><ul>{outcomes}</ul></section>')
    body.append(
        '<section id="metrics"><h2>Metrics</h2><p>What <code>/probe</code> returns for this listing.</p>'
        f"<pre>{e(report.metrics.rstrip())}</pre></section>"
    )
    rows = "".join(f"<tr><td><code>{e(k)}</code></td><td>{e(v)}</td></tr>" for k, v in report.settings)
    body.append(f'<section id="settings"><h2>Settings</h2><table>{rows}</table></section>')
    return pages.document(f"{env.name}: debug", "".join(body), links)


def _cleaned(noted: Noted, clean: Callable[[str, int], str]) -> Noted:
    """An item's upstream strings as one safe line each: a work id with a newline or a terminal escape
    in it must not forge lines of the text page, nor reach a terminal that runs curl."""
    return noted._replace(
        work_id=clean(noted.work_id, 200),
        session_id=clean(noted.session_id, 200) if noted.session_id is not None else None,
        state=clean(noted.state, 100),
        labels=tuple((clean(key, 100), clean(value, 200)) for key, value in noted.labels),
    )


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
