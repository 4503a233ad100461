"""Hostile input stays in its environment: each case from a fake upstream over loopback, through the
whole exporter, answered 200 with the other environments exact and no traceback in the log."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx
import pytest
from conftest import NOW, page, rfc3339, work
from exposition import samples, value
from fake_upstream import FakeUpstream, fake_upstream
from processes import wait_for
from upstream import running_exporter

from exporter.config.load import parse_config

ENV = {"ANTHROPIC_ENVIRONMENT_KEY": "sk-env-key-0123456789", "ANTHROPIC_API_KEY": "sk-api-key-0123456789"}
STATS = {"depth": 2, "pending": 1, "oldest_queued_at": None, "workers_polling": 3}


def config(fake: FakeUpstream, yaml: str = "", envs: tuple[str, ...] = ("env_a", "env_b"), base=None):
    listed = "".join(f"  - id: {e}\n" for e in envs)
    text = f"api:\n  base_url: {fake.url}\n  max_retries: 0\n{yaml}environments:\n{listed}"
    return parse_config(text, ENV, base_dir=base)


def healthy(fake: FakeUpstream, env_id: str, items: int = 2) -> None:
    fake.answer(f"/v1/environments/{env_id}/work", page([work("queued", age=30) for _ in range(items)]))
    fake.answer(f"/v1/environments/{env_id}/work/stats", STATS)


def scrape(address: str, **headers: str) -> httpx.Response:
    response = httpx.get(f"http://{address}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response


def test_a_stats_answer_too_big_for_a_float_fails_stats_only(log_stream):
    with fake_upstream() as fake:
        healthy(fake, "env_a")
        healthy(fake, "env_b")
        fake.answer("/v1/environments/env_a/work/stats", b'{"depth": 1' + b"0" * 400 + b', "pending": 0}')
        with running_exporter(config(fake)) as exporter:
            body = scrape(exporter.address).text
    m = samples(body)
    assert value(m, "anthropic_work_scrape_success", environment_id="env_a") == 1
    assert value(m, "anthropic_work_items", environment_id="env_a", state="queued") == 2
    assert value(m, "anthropic_work_stats_success", environment_id="env_a") == 0
    assert value(m, "anthropic_work_queue_depth", environment_id="env_a") is None
    reason = {"environment_id": "env_a", "source": "stats", "reason": "invalid_response"}
    assert value(m, "anthropic_work_listing_failures_total", **reason) == 1
    assert value(m, "anthropic_work_queue_depth", environment_id="env_b") == 2
    assert "Traceback" not in log_stream.getvalue()


def test_a_stats_call_slower_than_the_deadline_costs_stats_only_never_the_listing_beside_it():
    with fake_upstream() as fake:
        healthy(fake, "env_a")
        fake.held("/v1/environments/env_a/work/stats", STATS)  # answers only after the scrape
        timeout = {"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}
        with running_exporter(config(fake, envs=("env_a",))) as exporter:
            first = samples(scrape(exporter.address, **timeout).text)
            second = samples(scrape(exporter.address, **timeout).text)  # counts the first listing's end
    for m in (first, second):
        assert value(m, "anthropic_work_scrape_success", environment_id="env_a") == 1
        assert value(m, "anthropic_work_items", environment_id="env_a", state="queued") == 2
        assert value(m, "anthropic_work_stats_success", environment_id="env_a") == 0
    stats_late = {"environment_id": "env_a", "source": "stats", "reason": "deadline"}
    assert value(second, "anthropic_work_listing_failures_total", **stats_late) == 1
    assert not any(labels for (name, labels) in second if ("source", "work") in labels)


@pytest.mark.parametrize("where", ["metadata", "data"])
def test_json_nested_past_the_parsers_inside_one_item_is_invalid_response_without_a_traceback(
    where, log_stream
):
    nested = "[" * 5000 + "]" * 5000
    item = json.dumps(work("queued", age=5))[:-1] + f', "{where}x": 1, "{where}": {nested}}}'
    with fake_upstream() as fake:
        healthy(fake, "env_b")
        fake.answer("/v1/environments/env_a/work", f'{{"data": [{item}], "next_page": null}}'.encode())
        fake.answer("/v1/environments/env_a/work/stats", STATS)
        with running_exporter(config(fake, "breakdown: {metadata_keys: [team]}\n")) as exporter:
            m = samples(scrape(exporter.address).text)
    assert value(m, "anthropic_work_scrape_success", environment_id="env_a") == 0
    reason = {"environment_id": "env_a", "source": "work", "reason": "invalid_response"}
    assert value(m, "anthropic_work_listing_failures_total", **reason) == 1
    assert value(m, "anthropic_work_items", environment_id="env_b", state="queued") == 2
    log = log_stream.getvalue()
    assert "reason=invalid_response" in log and "Traceback" not in log and "internal" not in log


@pytest.mark.parametrize(
    "item",
    [
        {"id": "bad\ud800id", "state": "queued"},
        {"id": "w1", "state": "queued\udfff"},
        {"id": "w1", "state": "queued", "metadata": {"team": "a\ud800"}},
    ],
    ids=["id", "state", "metadata"],
)
def test_text_that_is_no_text_fails_that_listing_only(item, log_stream):
    body = json.dumps({"data": [item], "next_page": None}).encode()  # \ud800 escapes: legal JSON
    with fake_upstream() as fake:
        healthy(fake, "env_b")
        fake.answer("/v1/environments/env_a/work", body)
        fake.answer("/v1/environments/env_a/work/stats", STATS)
        with running_exporter(config(fake, "breakdown: {metadata_keys: [team]}\n")) as exporter:
            m = samples(scrape(exporter.address).text)
            landing = httpx.get(f"http://{exporter.address}/", timeout=10)
    assert landing.status_code == 200
    reason = {"environment_id": "env_a", "source": "work", "reason": "invalid_response"}
    assert value(m, "anthropic_work_listing_failures_total", **reason) == 1
    assert value(m, "anthropic_work_scrape_success", environment_id="env_b") == 1
    assert "Traceback" not in log_stream.getvalue()


def discovery_config(fake: FakeUpstream, keys: Path, interval: float = 300) -> object:
    yaml = (
        "discovery:\n  credentials: {type: api_key, value_env: ANTHROPIC_API_KEY}\n"
        f"  refresh_interval_seconds: {interval}\n  environment_keys_dir: {keys}\n"
    )
    return parse_config(f"api:\n  base_url: {fake.url}\n  max_retries: 0\n{yaml}", ENV)


def listed_environment(env_id: str) -> dict:
    return {"id": env_id, "name": f"name of {env_id}", "config": {"type": "self_hosted"}, "archived_at": None}


def test_discovered_ids_that_are_unsafe_or_repeated_are_skipped_counted_and_logged_once(tmp_path, log_stream):
    (tmp_path / "env_ok").write_text("sk-env-ok-key-0123456789\n")
    unsafe = ["bad\ud800id", ".", "..", "a/b", "a%2Fb", "x" * 257, "with space", "env_ok"]
    with fake_upstream() as fake:
        healthy(fake, "env_ok")
        fake.answer("/v1/environments", {"data": [listed_environment(e) for e in ["env_ok", *unsafe]]})
        with running_exporter(discovery_config(fake, tmp_path, interval=0.2)) as exporter:
            wait_for("three discoveries", lambda: fake.count("/v1/environments?") >= 3)
            body = scrape(exporter.address).text
            landing = httpx.get(f"http://{exporter.address}/", timeout=10)
    assert landing.status_code == 200
    m = samples(body)
    assert value(m, "anthropic_work_discovery_invalid_environments") == 8  # 7 unsafe, 1 repeat
    assert value(m, "anthropic_work_exporter_watched_environments") == 1
    assert value(m, "anthropic_work_scrape_success", environment_id="env_ok") == 1
    assert body.count('anthropic_work_scrape_success{environment_id="env_ok"}') == 1  # no duplicate
    assert not any("/v1/work" in r or "/v1/environments/work" in r for r in fake.requests)
    assert not any(r.startswith("/v1/environments/.") for r in fake.requests)
    skipped = [line for line in log_stream.getvalue().splitlines() if "discovery skipped" in line]
    assert len(skipped) == 1 and "skipped=8" in skipped[0]


def test_a_key_file_outside_the_keys_directory_is_never_sent(tmp_path):
    keys, elsewhere = tmp_path / "keys", tmp_path / "elsewhere"
    keys.mkdir()
    elsewhere.mkdir()
    (elsewhere / "secret").write_text("sk-not-for-upstream-0123456789\n")
    (keys / "env_out").symlink_to(elsewhere / "secret")
    # The Kubernetes Secret layout: name -> ..data/name, ..data -> ..2026_11_30...
    (keys / "..2026_11_30").mkdir()
    (keys / "..2026_11_30" / "env_in").write_text("sk-env-in-key-0123456789\n")
    (keys / "..data").symlink_to("..2026_11_30")
    (keys / "env_in").symlink_to("..data/env_in")
    (keys / "env_big").write_text("k" * 5000)
    with fake_upstream() as fake:
        for env_id in ("env_in", "env_out", "env_big"):
            healthy(fake, env_id)
        fake.answer(
            "/v1/environments", {"data": [listed_environment(e) for e in ("env_in", "env_out", "env_big")]}
        )
        with running_exporter(discovery_config(fake, keys)) as exporter:
            wait_for("a discovery", lambda: fake.count("/v1/environments?"))
            wait_for("env_in listed", lambda: "env_in" in scrape(exporter.address).text)
            m = samples(scrape(exporter.address).text)
    assert value(m, "anthropic_work_scrape_success", environment_id="env_in") == 1
    for env_id in ("env_out", "env_big"):
        assert value(m, "anthropic_work_scrape_success", environment_id=env_id) == 0
        no_key = {"environment_id": env_id, "source": "work", "reason": "no_credentials"}
        assert value(m, "anthropic_work_listing_failures_total", **no_key) >= 1
    assert fake.count("/v1/environments/env_out/") == 0 and fake.count("/v1/environments/env_big/") == 0


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("application/openmetrics-text; version=garbage", "text/plain; version=0.0.4; charset=utf-8"),
        ("application/openmetrics-text; version=9.9.9, text/plain;q=0.1", "text/plain; version=0.0.4"),
        ("application/openmetrics-text;version=1.0.0;q=0.9,text/plain;q=0.5", "application/openmetrics-text"),
        ("application/openmetrics-text;version=0.0.1", "application/openmetrics-text; version=0.0.1"),
        ("application/json", "text/plain; version=0.0.4"),
        ("text/html;q=abc, */*;q=0.8", "text/plain; version=0.0.4"),
        (";;;,,,=", "text/plain; version=0.0.4"),
        (b"\xff\xfe", "text/plain; version=0.0.4"),
    ],
)
def test_any_accept_gets_a_valid_answer(accept, content_type):
    with fake_upstream() as fake:
        healthy(fake, "env_a")
        with running_exporter(config(fake, envs=("env_a",))) as exporter:
            response = httpx.get(f"http://{exporter.address}/metrics", headers={"Accept": accept}, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    if content_type.startswith("text/plain"):
        assert samples(response.text)[("anthropic_work_scrape_success", (("environment_id", "env_a"),))] == 1
    else:
        assert response.text.endswith("# EOF\n")


def test_a_client_that_refuses_every_format_gets_406_before_anything_is_listed():
    with fake_upstream() as fake:
        healthy(fake, "env_a")
        with running_exporter(config(fake, envs=("env_a",))) as exporter:
            refused = httpx.get(
                f"http://{exporter.address}/metrics",
                headers={"Accept": "text/plain;q=0, */*;q=0"},
                timeout=30,
            )
            probe = httpx.get(
                f"http://{exporter.address}/probe?environment_id=env_a",
                headers={"Accept": "application/openmetrics-text;version=7.0.0, text/plain;q=0"},
                timeout=30,
            )
    assert (refused.status_code, probe.status_code) == (406, 406)
    assert "text/plain; version=0.0.4" in refused.text
    assert fake.count("/v1/environments/env_a/work") == 0


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip", True),
        ("gzip;q=0", False),
        ("gzip;q=0, *", False),
        ("*", True),
        ("*;q=0", False),
        ("br, gzip;q=0.5", True),
        ("gzip;q=x", False),
        ("identity", False),
        ("", False),
    ],
)
def test_gzip_only_when_accepted_with_q_above_0(accept_encoding, gzipped):
    with fake_upstream() as fake:
        healthy(fake, "env_a")
        with running_exporter(config(fake, envs=("env_a",))) as exporter, httpx.Client(timeout=30) as client:
            response = client.get(
                f"http://{exporter.address}/metrics", headers={"Accept-Encoding": accept_encoding}
            )
            raw = response.read()
    assert (response.headers.get("content-encoding") == "gzip") == gzipped
    body = (
        response.text
        if not gzipped
        else gzip.decompress(raw).decode()
        if raw[:2] == b"\x1f\x8b"
        else response.text
    )
    assert 'anthropic_work_scrape_success{environment_id="env_a"} 1.0' in body


def test_the_age_of_hostile_timestamps(log_stream):
    """Far past, far future and garbled: counted per state, left out of the ages, no traceback."""
    items = [
        work("queued", created_at="0001-01-01T00:00:00Z"),
        work("queued", created_at="9999-12-31T23:59:59-23:59"),
        work("queued", created_at=rfc3339(NOW - 10)),
    ]
    with fake_upstream() as fake:
        fake.answer("/v1/environments/env_a/work", page(items))
        fake.answer("/v1/environments/env_a/work/stats", STATS)
        with running_exporter(config(fake, envs=("env_a",))) as exporter:
            m = samples(scrape(exporter.address).text)
    assert value(m, "anthropic_work_items", environment_id="env_a", state="queued") == 3
    assert value(m, "anthropic_work_state_age_seconds_gcount", environment_id="env_a", state="queued") == 1
    assert value(m, "anthropic_work_unparseable_timestamps", environment_id="env_a", field="created_at") == 2
    assert "Traceback" not in log_stream.getvalue()
