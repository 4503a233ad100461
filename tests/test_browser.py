"""The pages in a real browser (headless Chromium): the landing page and the debug page of `--demo`
as an operator opens them. The DOM is read after the browser has laid it out: what each status
cell says and how it is coloured, the debug page's sections in order with their anchors, and that
nothing is wider than a 1280 px window. A screenshot of each is taken (and must be a picture of
that width); scripts/screenshots.py makes the README's from the same pages."""

from __future__ import annotations

import re
import struct
import time

import httpx
import pytest
from browser import WIDTH, headless_chromium
from processes import exporter_process
from upstream import config_for, running_exporter, running_simulator, static_env

DYING = "env_01demoDyingWorkers000"
DEMO = ("env_01demoBusySandboxes00", "env_01demoIdleSandboxes00", DYING)
STATES = ["queued", "starting", "active", "stopping", "stopped"]
OVERFLOW = "return document.documentElement.scrollWidth - document.documentElement.clientWidth"


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as b:
        yield b


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with exporter_process("--demo", cwd=tmp_path_factory.mktemp("demo")) as (url, _log):
        httpx.get(f"{url}/metrics", timeout=30)  # every environment listed once
        yield url


def test_the_landing_page_of_the_demo_shows_each_environment_s_status_and_counts(browser, demo, tmp_path):
    browser.load(f"{demo}/")
    table = browser.run(
        """
        const rows = [...document.querySelectorAll('table.environments tr')];
        return rows.map(r => [...r.children].map(c => ({
            text: c.innerText.trim(), cls: c.className, title: (c.querySelector('time') || {}).title || '',
            href: (c.querySelector('a') || {}).href || '',
            colour: getComputedStyle(c).color})));
        """
    )
    heads = [c["text"] for c in table[0]]
    assert heads == ["environment", "name", "status", "last listing", *STATES, "debug page"]
    rows = {row[0]["text"]: dict(zip(heads, row, strict=True)) for row in table[1:]}
    assert set(rows) == set(DEMO)
    for env_id, row in rows.items():
        assert (row["status"]["text"], row["status"]["cls"]) == ("ok", "status ok")
        assert row["status"]["colour"] == "rgb(26, 127, 55)"  # green
        assert row["last listing"]["text"].endswith(" s ago") and row["last listing"]["title"].endswith("Z")
        assert all(row[state]["text"].isdigit() for state in STATES)
        assert row["debug page"]["href"] == f"{demo}/probe?environment_id={env_id}&debug=true"
    assert int(rows["env_01demoBusySandboxes00"]["active"]["text"]) > 0
    assert browser.run(OVERFLOW) <= 0  # nothing wider than the window
    png = browser.screenshot()
    (tmp_path / "landing.png").write_bytes(png)
    assert png_size(png)[0] == WIDTH and browser.run("return window.innerWidth") == WIDTH


def test_a_failing_environment_is_red_and_says_failing_with_its_reason(browser):
    good, refused = static_env("env_good", 2, time.time()), static_env("env_refused", 1, time.time())
    with (
        running_simulator(good) as (_sim, url),
        running_exporter(config_for(url, good, refused)) as exporter,
    ):
        httpx.get(f"http://{exporter.address}/metrics", timeout=30)
        browser.load(f"http://{exporter.address}/")
        cells = browser.run(
            """return [...document.querySelectorAll('td.status')].map(c =>
                [c.closest('tr').querySelector('td').innerText.trim(), c.innerText.trim(),
                 getComputedStyle(c).color])"""
        )
    assert sorted(cells) == [
        ["env_good", "ok", "rgb(26, 127, 55)"],
        ["env_refused", "failing (http_401)", "rgb(207, 34, 46)"],  # red
    ]


def test_the_debug_page_opens_on_its_summary_with_a_section_per_condition_and_working_anchors(
    browser, demo, tmp_path
):
    page = f"{demo}/probe?environment_id={DYING}&debug=true"
    browser.load(page)
    sections = browser.run(
        """return [...document.querySelectorAll('section')].map(s => ({
            id: s.id, top: s.getBoundingClientRect().top + window.scrollY,
            title: (s.querySelector('h2') || {}).innerText || '',
            items: s.querySelectorAll('table.items tr').length}))"""
    )
    ids = [s["id"] for s in sections]
    assert ids == [
        "summary",
        "queued-too-long",
        "stale-heartbeat",
        "without-heartbeat",
        "stuck-stopping",
        "log",
        "metrics",
        "settings",
    ]
    tops = [s["top"] for s in sections]
    assert tops == sorted(tops) and tops[0] < 900  # the summary is on the first screen
    stale = sections[2]
    assert stale["title"].startswith("Heartbeat older than 90 s: ") and stale["items"] > 1  # header + items
    summary = browser.run(
        """return [...document.querySelectorAll('table.attention tr')].slice(1).map(r =>
            [r.cells[0].innerText.trim(), Number(r.cells[1].innerText), r.querySelector('a').hash])"""
    )
    assert [s[2] for s in summary] == [
        "#queued-too-long",
        "#stale-heartbeat",
        "#without-heartbeat",
        "#stuck-stopping",
    ]
    assert summary[1][1] > 0  # the dying workers' stale heartbeats
    assert browser.run(OVERFLOW) <= 0
    png = browser.screenshot()
    (tmp_path / "debug.png").write_bytes(png)
    assert png_size(png)[0] == WIDTH and browser.run("return window.innerWidth") == WIDTH
    # An anchor (as an alert or a runbook links it) opens the page at its section.
    browser.load(f"{page}#stale-heartbeat")
    at = browser.run(
        "const s = document.getElementById('stale-heartbeat'); return [window.scrollY, "
        "Math.round(s.getBoundingClientRect().top), document.querySelector(':target').id]"
    )
    assert at[0] > 0 and abs(at[1]) <= 2 and at[2] == "stale-heartbeat"


def test_the_readme_shows_current_screenshots_of_both_pages():
    """Made by scripts/screenshots.py at the window width the tests use."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    shown = re.findall(r"!\[[^\]]*\]\((docs/images/[^)]+\.png)\)", readme)
    assert sorted(shown) == ["docs/images/debug-page.png", "docs/images/landing-page.png"]
    for path in shown:
        assert png_size((root / path).read_bytes())[0] == WIDTH, path
