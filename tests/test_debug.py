"""The debug page, `/probe?environment_id=ENV&debug=true`: a fresh listing's log, its metrics, the
settings without a key, and the work items that need attention, oldest first, chosen in bounded memory."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from conftest import NOW, page, rfc3339, work
from fake_upstream import fake_upstream
from htmlpage import Page
from upstream import running_exporter

from exporter.api.codec import WorkItem
from exporter.api.requests import RequestLog, Try
from exporter.config.load import parse_config
from exporter.config.schema import Thresholds
from exporter.folds.work import Aggregator
from exporter.web.auth import load_web_config

KEY = "sk-debug-environment-key-0123456789"
STATS = {"depth": 1, "pending": 0, "oldest_queued_at": None, "workers_polling": 2}


def item(work_id: str, state: str, since: float, heartbeat: float | None = None, team: str | None = None):
    """A WorkItem in `state` since `since`, as the decoder makes it."""
    index = {"queued": 0, "starting": 1, "active": 2, "stopping": 3}[state]
    events = tuple(since if i == index else None for i in range(5))
    return WorkItem(work_id, state, events, heartbeat, (), (team,), f"sesn_{work_id}")


def test_the_oldest_of_each_kind_past_its_threshold_are_kept_page_by_page_and_counted_exactly():
    thresholds = Thresholds(
        queue_wait_too_long=150, stale_heartbeat=90, starting_without_heartbeat=90, stuck_stopping=600
    )
    aggregator = Aggregator((60.0,), (60.0,), ("team",), thresholds=thresholds, attention_items=2)
    pages = [
        [item("q1", "queued", NOW - 100), item("a1", "active", NOW - 500, heartbeat=NOW - 95, team="x")],
        [
            item("q2", "queued", NOW - 300),
            item("s1", "starting", NOW - 200),
            item("a2", "active", NOW - 50, NOW - 5),
        ],
        [item("q3", "queued", NOW - 200), item("a3", "active", NOW - 900, heartbeat=NOW - 400)],
        [
            item("s2", "starting", NOW - 30),
            item("s3", "starting", NOW - 700),
            item("p1", "stopping", NOW - 601, NOW - 91),
            item("p2", "stopping", NOW - 599, NOW - 10),
        ],
        [item("q4", "queued", NOW - 400), item("q5", "queued", NOW - 151)],
    ]
    for items in pages:
        aggregator.add_page(items, NOW)
    attention = aggregator.summary().attention
    assert all(len(heap) <= 2 for heap in attention.heaps.values())  # never more than asked for
    # q1 waited 100 s, under the 150 s threshold: not listed, not counted
    assert attention.counts == {"queued": 4, "stale_heartbeat": 3, "no_heartbeat": 2, "stuck_stopping": 1}
    assert [n.work_id for n in attention.oldest("queued")] == ["q4", "q2"]
    assert [n.work_id for n in attention.oldest("stale_heartbeat")] == ["a3", "a1"]  # a2 beat 5 s ago
    assert [n.work_id for n in attention.oldest("no_heartbeat")] == ["s3", "s1"]  # s2: 30 s, in the lease
    assert [n.work_id for n in attention.oldest("stuck_stopping")] == ["p1"]
    a3 = attention.oldest("stale_heartbeat")[0]
    assert a3.ages == (("heartbeat", 400.0), ("in state", 900.0)) and a3.session_id == "sesn_a3"
    assert attention.oldest("stale_heartbeat")[1].labels == (("team", "x"),)


def test_the_request_log_of_a_listing_keeps_its_first_and_last_requests_whatever_the_pages():
    log = RequestLog(head=2, tail=3)
    for n in range(1000):
        log.append(Try(f"/page/{n}", {}, "200", 10, 0.01, "", 0, None))
    assert [t.path for t in log.first] == ["/page/0", "/page/1"]
    assert [t.path for t in log.last] == ["/page/997", "/page/998", "/page/999"]
    assert (log.total, log.omitted) == (1000, 995)


def listing_pages(count: int, per_page: int):
    """`count` queued items over pages of `per_page`, item n created n seconds before NOW - 1000."""
    items = [
        work("queued", id=f"work_{n:05d}", created_at=rfc3339(NOW - 1000 - n), data={"id": f"sesn_{n:05d}"})
        for n in range(count)
    ]
    chunks = [items[n : n + per_page] for n in range(0, count, per_page)]
    return [page(chunk, str(i + 1) if i + 1 < len(chunks) else None) for i, chunk in enumerate(chunks)]


def config(fake, yaml: str = ""):
    return parse_config(
        f"api: {{base_url: '{fake.url}', max_retries: 0}}\n{yaml}"
        "breakdown: {metadata_keys: [team]}\nenvironments: [{id: env_a, name: prod-sandboxes}]\n",
        {"ANTHROPIC_ENVIRONMENT_KEY": KEY},
    )


def test_the_debug_page_shows_the_log_the_metrics_the_settings_and_the_oldest_items():
    now = time.time()  # the exporter measures ages against its own clock
    stale = work("active", id="work_stale", age=3000, heartbeat_age=1200, now=now, data={"id": "sesn_stale"})
    stale["metadata"] = {"team": "search"}
    fresh = work("active", id="work_fresh", age=3000, heartbeat_age=3, now=now, data={"id": "sesn_fresh"})
    mute = work("starting", id="work_mute", age=600, now=now, data={"id": "sesn_mute"})
    pages = listing_pages(250, 100)
    pages[1]["data"] += [stale, fresh, mute]
    with fake_upstream() as fake:
        fake.pages("/v1/environments/env_a/work", pages)
        fake.answer("/v1/environments/env_a/work/stats", STATS)
        with running_exporter(config(fake)) as exporter:
            url = f"http://{exporter.address}/probe?environment_id=env_a&debug=true&debug_items=3"
            response = httpx.get(url, timeout=30)
    text = response.text
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    sections = [
        line for line in text.splitlines() if line.startswith("# ") and line[2:6] not in ("HELP", "TYPE")
    ]
    assert [s.split(" (")[0].split(":")[0] for s in sections] == [
        "# env_a",
        "# Listing log",
        "# Metrics",
        "# Settings",
    ]
    summary = text.split("## Summary\n\n")[1].split("\n\n")[0].splitlines()
    assert summary == [
        "items: 253 (queued 250, starting 1, active 2, stopping 0, stopped 0)",
        "Queued longer than 300 s: 250",
        "Heartbeat older than 90 s: 1",
        "Never heartbeated, in state longer than 90 s: 1",
        "Stopping longer than 600 s: 0",
    ]
    items = text.split("# Listing log")[0]
    queued = items.split("## Queued longer than 300 s: 250, the oldest 3 listed\n")[1].split("\n\n")[0]
    queued_lines = queued.splitlines()
    assert [line.split()[0] for line in queued_lines] == ["work_00249", "work_00248", "work_00247"]
    assert queued_lines[0].startswith("work_00249  session sesn_00249  queued  waiting ")
    stale_line = items.split("## Heartbeat older than 90 s: 1\n")[1].splitlines()[0]
    assert (
        stale_line.startswith("work_stale  session sesn_stale  active  heartbeat ")
        and "team=search" in stale_line
    )
    never = "## Never heartbeated, in state longer than 90 s: 1\n"
    assert never + "work_mute  session sesn_mute  starting  in state " in items
    log = text.split("# Listing log")[1].split("# Metrics")[0]
    assert "GET /v1/environments/env_a/work?limit=100 -> 200" in log
    assert "GET /v1/environments/env_a/work?limit=100&page=2 -> 200" in log
    assert "GET /v1/environments/env_a/work/stats -> 200" in log
    assert "work: ok" in log and "stats: ok" in log
    assert 'anthropic_work_items{environment_id="env_a",state="queued"} 250.0' in text
    settings = dict(line.split(None, 1) for line in text.split("# Settings\n\n")[1].splitlines())
    assert settings["credentials"] == "environment_key from env ANTHROPIC_ENVIRONMENT_KEY"
    assert KEY not in text and "work-secret-never-shown" not in text


def test_a_failing_listing_shows_why_on_the_debug_page_and_tries_no_retry_twice():
    with fake_upstream() as fake:
        fake.answer(
            "/v1/environments/env_a/work",
            {"type": "error", "error": {"type": "authentication_error", "message": "invalid key"}},
            status=401,
        )
        fake.answer("/v1/environments/env_a/work/stats", STATS)
        with running_exporter(config(fake)) as exporter:
            url = f"http://{exporter.address}/probe?environment_id=env_a&debug=true"
            text = httpx.get(url, timeout=30).text
            html = httpx.get(url, headers={"Accept": BROWSER_ACCEPT}, timeout=30).text
    shown = Page(html)
    assert shown.ids[:2] == ["summary", "log"]  # no item sections: nothing was listed
    assert "The work listing failed: http_401: HTTP 401 authentication_error: invalid key." in html
    assert "GET /v1/environments/env_a/work?limit=100 -&gt; 401, " in html
    assert "GET /v1/environments/env_a/work?limit=100 -> 401, " in text
    assert "failed: http_401: HTTP 401 authentication_error: invalid key" in text
    assert "work: failed, http_401: HTTP 401 authentication_error: invalid key" in text
    assert 'anthropic_work_scrape_success{environment_id="env_a"} 0.0' in text


@pytest.mark.parametrize(
    "items", ["0", "1001", "-1", "x", "1e3", "20&debug_items=0", "%C2%B2", "%E2%91%A0", "%D9%A3", " 3", "3 "]
)
def test_a_bad_debug_items_is_400_naming_it_before_anything_is_listed(items):
    with fake_upstream() as fake:
        fake.answer("/v1/environments/env_a/work", page([]))
        with running_exporter(config(fake)) as exporter:
            url = f"http://{exporter.address}/probe?environment_id=env_a&debug=true&debug_items={items}"
            response = httpx.get(url, timeout=30)
    assert response.status_code == 400
    assert "debug_items must be a whole number from 1 to 1000, in ASCII digits" in response.text
    assert fake.requests == []


def test_the_debug_page_is_behind_the_same_basic_auth(tmp_path):
    hashed = "$2y$04$5rdYXI91QPOFthQdfP4jSerUv2iCnvWhLd/KhtLAdmNXDUKCgnHaq"  # "pw", cost 4
    (tmp_path / "web.yml").write_text(f"basic_auth_users: {{prom: '{hashed}'}}\n")
    web = load_web_config(tmp_path / "web.yml")
    with fake_upstream() as fake:
        fake.answer("/v1/environments/env_a/work", page([]))
        fake.answer("/v1/environments/env_a/work/stats", STATS)
        with running_exporter(config(fake), web) as exporter:
            url = f"http://{exporter.address}/probe?environment_id=env_a&debug=true"
            anonymous = httpx.get(url, timeout=30)
            allowed = httpx.get(url, auth=("prom", "pw"), timeout=30)
    assert (anonymous.status_code, allowed.status_code) == (401, 200)
    assert fake.count("/v1/environments/env_a/work") == 2  # the page's own listing, once


def test_a_request_id_that_echoes_the_key_is_shown_without_it():
    with fake_upstream() as fake:
        fake.answer("/v1/environments/env_a/work", page([]), headers={"request-id": f"req_{KEY}"})
        fake.answer("/v1/environments/env_a/work/stats", STATS)
        with running_exporter(config(fake)) as exporter:
            text = httpx.get(
                f"http://{exporter.address}/probe?environment_id=env_a&debug=true", timeout=30
            ).text
    assert "request-id req_[REDACTED]" in text and KEY not in text


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (BROWSER_ACCEPT, "text/html; charset=utf-8"),
        ("*/*", "text/plain; charset=utf-8"),  # curl
        (None, "text/plain; charset=utf-8"),
        ("text/plain", "text/plain; charset=utf-8"),
        ("text/html;q=0.5, text/plain", "text/plain; charset=utf-8"),
    ],
)
def test_a_browser_gets_the_debug_page_as_html_and_tools_as_text(accept, content_type):
    with fake_upstream() as fake:
        fake.pages("/v1/environments/env_a/work", listing_pages(3, 100))
        fake.answer("/v1/environments/env_a/work/stats", STATS)
        with running_exporter(config(fake)) as exporter:
            headers = {"Accept": accept} if accept else {}
            url = f"http://{exporter.address}/probe?environment_id=env_a&debug=true"
            response = httpx.get(url, headers=headers, timeout=30)
    assert (response.status_code, response.headers["content-type"]) == (200, content_type)


def test_the_html_debug_page_starts_with_the_summary_then_one_anchored_section_per_condition():
    now = time.time()
    stale = work("active", id="work_stale", age=3000, heartbeat_age=1200, now=now, data={"id": "sesn_stale"})
    stale["metadata"] = {"team": "search"}
    fresh = work("active", id="work_fresh", age=3000, heartbeat_age=3, now=now, data={"id": "sesn_fresh"})
    young = work("starting", id="work_young", age=5, now=now, data={"id": "sesn_young"})  # under 90 s
    mute = work("starting", id="work_mute", age=600, now=now, data={"id": "sesn_mute"})
    stopping = work(
        "stopping", id="work_stuck", age=4000, heartbeat_age=30, now=now, data={"id": "sesn_stuck"}
    )
    pages = listing_pages(250, 100)
    pages[1]["data"] += [stale, fresh, young, mute, stopping]
    with fake_upstream() as fake:
        fake.pages("/v1/environments/env_a/work", pages)
        fake.answer("/v1/environments/env_a/work/stats", STATS)
        with running_exporter(config(fake)) as exporter:
            url = f"http://{exporter.address}/probe?environment_id=env_a&debug=true&debug_items=3"
            response = httpx.get(url, headers={"Accept": BROWSER_ACCEPT}, timeout=30)
    shown = Page(response.text)
    sections = ["summary", "queued-too-long", "stale-heartbeat", "without-heartbeat", "stuck-stopping"]
    assert [i for i in shown.ids if i in {*sections, "log", "metrics", "settings"}] == [
        *sections,
        "log",
        "metrics",
        "settings",
    ]
    (states,) = shown.table("states").records()
    assert {k: c.text for k, c in states.items()} == {
        "items": "255",
        "queued": "250",
        "starting": "2",
        "active": "2",
        "stopping": "1",
        "stopped": "0",
    }
    assert states["queued"].classes == {"bad"}  # above the backlog threshold, 50
    attention = {r["needs attention"].text: r for r in shown.table("attention").records()}
    assert {k: r["items"].text for k, r in attention.items()} == {
        "Queued longer than 300 s": "250",
        "Heartbeat older than 90 s": "1",
        "Never heartbeated, in state longer than 90 s": "1",
        "Stopping longer than 600 s": "1",
    }
    assert attention["Queued longer than 300 s"]["needs attention"].links == ["#queued-too-long"]
    items = [t for t in shown.tables if "items" in t.attrs.get("class", "").split()]
    listed = [[r["work id"].text for r in t.records()] for t in items]
    assert listed == [
        ["work_00249", "work_00248", "work_00247"],
        ["work_stale"],
        ["work_mute"],
        ["work_stuck"],
    ]
    (stale_row,) = items[1].records()
    assert stale_row["session id"].text == "sesn_stale" and stale_row["metadata"].text == "team=search"
    assert re.fullmatch(
        r"heartbeat 120\d s \(20m0\ds\), in state 300\d s \(50m0\ds\)", stale_row["ages"].text
    )
    assert "work_young" not in response.text and "work_fresh" not in response.text
    assert (
        response.text.index('id="summary"')
        < response.text.index('id="log"')
        < response.text.index('id="metrics"')
    )
    assert KEY not in response.text


def test_upstream_text_on_the_debug_page_cannot_forge_its_lines_or_reach_a_terminal():
    """A work id, session id, state or metadata value with a newline or an escape sequence is shown
    on one line, its unprintable characters as `?`: the text page keeps its shape."""
    now = time.time()
    forged = work(
        "active", id="work_x\n## Heartbeat older than 90 s: 0", age=3000, heartbeat_age=1200, now=now
    )
    forged["data"] = {"id": "sesn_\x1b[2Jcleared", "type": "session"}
    forged["metadata"] = {"team": "a\rb"}
    with fake_upstream() as fake:
        fake.pages("/v1/environments/env_a/work", [page([forged])])
        fake.answer("/v1/environments/env_a/work/stats", STATS)
        with running_exporter(config(fake)) as exporter:
            url = f"http://{exporter.address}/probe?environment_id=env_a&debug=true"
            text = httpx.get(url, timeout=30).text
    assert "\x1b" not in text and "\r" not in text
    assert [line for line in text.splitlines() if line.startswith("## Heartbeat")] == [
        "## Heartbeat older than 90 s: 1"
    ]
    line = text.split("## Heartbeat older than 90 s: 1\n")[1].splitlines()[0]
    assert line.startswith("work_x?## Heartbeat older than 90 s: 0  session sesn_?[2Jcleared  active")
    assert line.endswith("team=a?b")
