"""The HTML pages a browser gets: the landing page, and the frame and look shared by the debug page
and the runbooks (`/docs/runbooks`, made from docs/runbooks.md by scripts/runbooks.py).

One small stylesheet, no script, nothing fetched from elsewhere: the pages work offline and
behind any proxy. Long ids and exposition lines wrap instead of widening the page. Links are
relative, or absolute under `--web.external-url` when the exporter is reached through a
proxy at another path.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from exporter import __version__
from exporter.config.schema import Environment
from exporter.running.reload import ReloadState
from exporter.running.store import Summary

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em;
  color: #1f2328; overflow-wrap: anywhere; }
h1, h2 { line-height: 1.25; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 1.6em; }
h1 small { font-size: 55%; font-weight: normal; }
code, pre { font: 13px/1.45 ui-monospace, monospace; background: #f6f8fa; border-radius: 4px; }
code { padding: .1em .3em; }
pre { padding: .8em; white-space: pre-wrap; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #d0d7de; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.good { color: #1a7f37; }
.bad, .failed { color: #cf222e; font-weight: 600; }
.hint { color: #59636e; }
.status { font-weight: 600; white-space: nowrap; }
.status.ok { color: #1a7f37; }
.status.failed { color: #cf222e; }
.status.pending { color: #59636e; }
nav a { margin-right: 1em; }
:target { background: #fff8c5; }
"""


@dataclass(frozen=True)
class Links:
    """Where the pages link: `base` is --web.external-url ("" for links relative to this host)."""

    base: str = ""

    def to(self, path: str) -> str:
        return f"{self.base}{path}"


def document(title: str, body: str, links: Links) -> str:
    """A whole page: the shared head and navigation around `body` (HTML)."""
    nav = (
        f'<nav><a href="{links.to("/")}">anthropic-work-exporter {html.escape(__version__)}</a>'
        f'<a href="{links.to("/metrics")}">metrics</a>'
        f'<a href="{links.to("/docs/runbooks")}">runbooks</a></nav>'
    )
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>{nav}\n{body}\n</body></html>\n"
    )


@dataclass(frozen=True)
class Family:
    name: str  # as a scrape shows it: counters end in _total
    type: str
    documentation: str


def landing(
    listed: Sequence[tuple[Environment, Summary | None]],
    more: int,
    states: Sequence[str],
    families: Sequence[Family],
    reload: ReloadState,
    now: float,
    links: Links,
    *,
    demo: bool,
) -> str:
    """The landing page: each environment's status (its latest listing's `Summary`, None before one
    ends), that listing's age and counts per state, and links to its metrics and debug page; then
    the metric families. `more`: environments watched but not listed here."""
    e = html.escape
    rows = "".join(_row(env, summary, states, now, links) for env, summary in listed)
    if more:
        rows += f'<tr><td colspan="{len(states) + 5}">and {more} more: see /metrics</td></tr>'
    demo_note = " <strong>Demo mode</strong>: a built-in simulated API." if demo else ""
    when = utc(reload.last_success_timestamp) if reload.last_success_timestamp else "never"
    config = (
        f"<p>Config: loaded at {when}.</p>"
        if reload.successful
        else "<p class=failed>The last reload was refused; the config loaded at "
        f"{when} still runs:</p><pre>{e(reload.message)}</pre>"
    )
    metrics = "".join(
        f"<tr><td><code>{e(f.name)}</code></td><td>{e(f.type)}</td><td>{e(f.documentation)}</td></tr>"
        for f in sorted(families, key=lambda f: f.name)
    )
    heads = "".join(f"<th>{e(state)}</th>" for state in states)
    body = (
        f"<h1>anthropic-work-exporter {e(__version__)}</h1><p>Work items of Anthropic "
        f"Managed Agents self-hosted environments, for Prometheus.{demo_note}</p>{config}<ul>"
        f'<li><a href="{links.to("/metrics")}">/metrics</a>: every environment this exporter watches, '
        "and its own metrics; <code>/probe?environment_id=…</code>: one environment, and with "
        "<code>&amp;debug=true</code> its debug page</li>"
        f'<li><a href="{links.to("/-/healthy")}">/-/healthy</a>, '
        f'<a href="{links.to("/-/ready")}">/-/ready</a>; '
        "<code>POST /-/reload</code> reloads the config</li>"
        f'<li>Documentation: <a href="{links.to("/docs/runbooks")}">the runbooks</a> (what each alert '
        "means and what to check); the README and <code>docs/</code> of version "
        f"{e(__version__)}; the web config format: "
        '<a href="https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md">'
        "exporter-toolkit</a></li></ul>"
        '<h2 id="environments">Environments</h2><table class=environments>'
        "<tr><th>environment</th><th>name</th>"
        f"<th>status</th><th>last listing</th>{heads}<th>debug page</th></tr>{rows}</table>"
        '<h2 id="metrics">Metrics</h2><table><tr><th>family</th><th>type</th><th>meaning</th></tr>'
        f"{metrics}</table>"
    )
    return document("anthropic-work-exporter", body, links)


def _row(env: Environment, summary: Summary | None, states: Sequence[str], now: float, links: Links) -> str:
    e = html.escape
    query = e(urlencode({"environment_id": env.id}))
    if summary is None:
        status = '<td class="status pending">not listed yet</td><td></td>'
        counts = "".join('<td class="n"></td>' for _ in states)
    else:
        word, kind = ("ok", "ok") if summary.success else ("failing", "failed")
        reasons = f" ({e(', '.join(summary.reasons))})" if summary.reasons else ""
        status = (
            f'<td class="status {kind}">{word}{reasons}</td>'
            f'<td><time datetime="{utc(summary.finished_at)}" title="{utc(summary.finished_at)}">'
            f"{_ago(now - summary.finished_at)}</time></td>"
        )
        known = summary.items or {}
        counts = "".join(f'<td class="n">{known.get(state, 0) if known else ""}</td>' for state in states)
    return (
        f'<tr><td><a href="{links.to("/probe")}?{query}"><code>{e(env.id)}</code></a></td>'
        f"<td>{e(env.name)}</td>{status}{counts}"
        f'<td><a href="{links.to("/probe")}?{query}&amp;debug=true">debug</a></td></tr>'
    )


def _ago(seconds: float) -> str:
    """`12 s ago`, `4 min ago`, `3 h ago`: how long ago, as one reads it."""
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago"


def utc(unix: float) -> str:
    """An instant as the pages write it: `2026-12-06T08:20:17Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))
