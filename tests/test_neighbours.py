"""No environment, credential or client takes what the others need.

For each resource the environments share (the request budget and its pauses, the listing
slots, the log), one environment or client misbehaves as hard as it can against a running
exporter over loopback, and every other environment is checked exact and on time: each
scrape answers with every other environment listed, never failed for `deadline`. The other
shared resources have theirs beside the code they test: flow memory in `test_memory.py` and
`test_event_loop.py`, the redactor and the key watcher in `test_keys.py`, the watched set in
`test_fleet.py`, and each on virtual time in `test_budget.py` and `test_engine.py`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import ssl

import httpx
import pytest
from conftest import page, work
from exposition import samples, value
from fake_upstream import FakeUpstream, fake_upstream
from processes import wait_for
from upstream import running_exporter

from exporter.config.load import parse_config
from exporter.config.schema import Config
from exporter.web.auth import load_web_config
from exporter.web.server import ServerLimits

KEYS = {
    "ANTHROPIC_ENVIRONMENT_KEY": "sk-shared-key-0123456789",
    "KEY_A": "sk-key-of-env-a-0123456789",
}
STATS = {"depth": 2, "pending": 1, "oldest_queued_at": None, "workers_polling": 3}
TIMEOUT = {"X-Prometheus-Scrape-Timeout-Seconds": "5"}


def config(fake: FakeUpstream, *others: str, yaml: str = "", api: str = "") -> Config:
    """env_a with a key of its own, and `others` with the shared default key."""
    listed = "".join(f"  - id: {env_id}\n" for env_id in others)
    return parse_config(
        f"api: {{base_url: '{fake.url}'{api}}}\n{yaml}environments:\n"
        "  - id: env_a\n    credentials: {type: environment_key, value_env: KEY_A}\n" + listed,
        KEYS,
    )


def healthy(fake: FakeUpstream, env_id: str, items: int) -> None:
    fake.answer(f"/v1/environments/{env_id}/work", page([work("queued", age=30) for _ in range(items)]))
    fake.answer(f"/v1/environments/{env_id}/work/stats", STATS)


def metrics(address: str, path: str = "/metrics") -> dict:
    response = httpx.get(f"http://{address}{path}", headers=TIMEOUT, timeout=30)
    assert response.status_code == 200, response.text
    return samples(response.text)


def assert_exact(m: dict, others: dict[str, int]) -> None:
    """Every other environment listed in this scrape, with its exact numbers."""
    for env_id, items in others.items():
        assert value(m, "anthropic_work_scrape_success", environment_id=env_id) == 1, env_id
        assert value(m, "anthropic_work_stats_success", environment_id=env_id) == 1, env_id
        assert value(m, "anthropic_work_items", environment_id=env_id, state="queued") == items, env_id


def failures(m: dict, env_id: str, source: str = "work") -> dict[str, float]:
    return {
        dict(labels)["reason"]: v
        for (name, labels), v in m.items()
        if name == "anthropic_work_listing_failures_total"
        and dict(labels)["environment_id"] == env_id
        and dict(labels)["source"] == source
    }


@pytest.mark.parametrize(
    ("status", "asked"),
    [(503, 1), (429, 1), (404, 4), (401, 4), (500, 4)],
    ids=["503", "429", "404", "401", "500"],
)
def test_one_environment_told_to_retry_after_30_s_holds_up_nobody_else(status, asked):
    """env_a's listing answers `status` with retry-after 30, four scrapes in a row: the others are
    exact in every one, and none waits for the deadline. A 503 or 429 pauses env_a alone (its own
    endpoint, its own key): it fails at once with reason `paused`; other statuses pause nothing."""
    with fake_upstream() as fake:
        healthy(fake, "env_b", 3)
        healthy(fake, "env_c", 5)
        error = {"type": "error", "error": {"type": "api_error", "message": "try later"}}
        fake.answer("/v1/environments/env_a/work", error, status, {"retry-after": "30"})
        fake.answer("/v1/environments/env_a/work/stats", STATS)
        with running_exporter(config(fake, "env_b", "env_c")) as exporter:
            scrapes = [metrics(exporter.address) for _ in range(4)]
    for m in scrapes:
        assert_exact(m, {"env_b": 3, "env_c": 5})
        assert value(m, "anthropic_work_scrape_success", environment_id="env_a") == 0
        assert value(m, "anthropic_work_stats_success", environment_id="env_a") == 1  # its stats go on
        assert "deadline" not in failures(m, "env_a")  # answered early, never by waiting it out
    paused = {"paused": 3} if asked == 1 else {}
    assert failures(scrapes[-1], "env_a") == {f"http_{status}": 4 - sum(paused.values()), **paused}
    assert fake.count("/v1/environments/env_a/work?") == asked
    assert value(scrapes[-1], "anthropic_work_budget_wait_seconds_total") == 0


def debug(address: str, env_id: str) -> int:
    url = f"http://{address}/probe?environment_id={env_id}&debug=true"
    return httpx.get(url, headers={"X-Prometheus-Scrape-Timeout-Seconds": "8"}, timeout=30).status_code


@pytest.mark.slow
@pytest.mark.parametrize("spread", [False, True], ids=["one-slow-environment", "forty-slow-environments"])
def test_forty_debug_pages_at_once_never_take_a_scrapes_listing_slot(spread):
    """40 debug pages at once, for one slow environment or for forty (scrape concurrency 8): a /probe of
    env_ok and a /metrics scrape meanwhile are on time and exact. Debug pages join the listing in
    flight, or list in their own pool; past it they get 429 with Retry-After."""
    slow = [f"env_slow{n:02d}" for n in range(40 if spread else 1)]
    with fake_upstream() as fake:
        healthy(fake, "env_ok", 4)
        for env_id in slow:
            fake.held(f"/v1/environments/{env_id}/work", page([]))  # answers only after the test
            fake.answer(f"/v1/environments/{env_id}/work/stats", STATS)
        healthy(fake, "env_a", 2)
        cfg = config(fake, "env_ok", *slow, yaml="scrape: {concurrency: 8}\n")
        with running_exporter(cfg) as exporter, concurrent.futures.ThreadPoolExecutor(40) as pool:
            pages = [pool.submit(debug, exporter.address, slow[n % len(slow)]) for n in range(40)]

            def listing() -> int:
                return sum(
                    1 for r in fake.requests if r.startswith("/v1/environments/env_slow") and "/work?" in r
                )

            wait_for("the debug listings under way", lambda: listing() >= min(len(slow), 4), 10)
            probe = metrics(exporter.address, "/probe?environment_id=env_ok")
            codes = sorted(page.result() for page in pages)
            everything = metrics(exporter.address)
    assert_exact(probe, {"env_ok": 4})
    assert_exact(everything, {"env_ok": 4, "env_a": 2})
    assert set(codes) <= {200, 429} and 200 in codes
    if not spread:
        assert codes == [200] * 40  # all joined one listing
        assert fake.count(f"/v1/environments/{slow[0]}/work?") == 2  # the debug pages', then /metrics'


def test_a_flapping_environment_logs_two_lines_and_the_others_keep_theirs(log_stream):
    """env_a answers 500, 502, 503 in turn for ten scrapes, then recovers: one line when it starts
    failing, one when it recovers with what it saw. env_b's own failure is logged beside it."""
    with fake_upstream() as fake:
        healthy(fake, "env_c", 1)
        fake.answer("/v1/environments/env_b/work", {"type": "error"}, 401)
        fake.answer("/v1/environments/env_b/work/stats", STATS)
        fake.answer("/v1/environments/env_a/work/stats", STATS)
        fake.cycle("/v1/environments/env_a/work", [(500, b""), (502, b""), (503, b"")])
        with running_exporter(config(fake, "env_b", "env_c", api=", max_retries: 0")) as exporter:
            for _ in range(10):
                assert_exact(metrics(exporter.address), {"env_c": 1})
            healthy(fake, "env_a", 2)
            assert_exact(metrics(exporter.address), {"env_a": 2, "env_c": 1})
    lines = log_stream.getvalue().splitlines()
    env_a = [line for line in lines if "environment_id=env_a" in line]
    assert len(env_a) == 2
    assert 'msg="listing work failed"' in env_a[0] and "reason=http_500" in env_a[0]
    assert 'msg="listing work recovered"' in env_a[1]
    assert "failures=10 reasons=http_500:4,http_502:3,http_503:3" in env_a[1]
    env_b = [line for line in lines if "environment_id=env_b" in line]
    assert len(env_b) == 1 and "reason=http_401" in env_b[0]


# -- clients: connections, the log, reloads ---------------------------------------------------


def connect(address: str, source: str) -> socket.socket:
    """A connection to the exporter from `source`, another loopback address (127.0.0.0/8 is all ours)."""
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0))


def answered(s: socket.socket) -> bool:
    try:
        s.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        return s.recv(1024).startswith(b"HTTP/1.1 200")
    except (ConnectionResetError, BrokenPipeError):
        return False


def test_one_client_cannot_take_every_connection():
    """127.0.0.2 opens as many connections as it may (5 here) and more: its sixth is closed at once,
    and Prometheus, from 127.0.0.3, is served all the while."""
    limits = ServerLimits(max_connections=20, max_connections_per_client=5)
    with fake_upstream() as fake:
        healthy(fake, "env_a", 1)
        with running_exporter(config(fake), limits=limits) as exporter:
            greedy = [connect(exporter.address, "127.0.0.2") for _ in range(5)]
            try:
                assert all(answered(s) for s in greedy)
                with contextlib.closing(connect(exporter.address, "127.0.0.2")) as sixth:
                    refused = not answered(sixth)
                with contextlib.closing(connect(exporter.address, "127.0.0.3")) as prometheus:
                    served = answered(prometheus)
            finally:
                for s in greedy:
                    s.close()
    assert refused and served


def test_one_client_failing_tls_handshakes_gets_one_log_line_a_minute_and_others_their_own(pki, log_stream):
    (pki / "web.yml").write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    web = load_web_config(pki / "web.yml")
    logs = log_stream
    with fake_upstream() as fake:
        healthy(fake, "env_a", 1)
        with running_exporter(config(fake), web) as exporter:
            for source in ["127.0.0.2"] * 30 + ["127.0.0.3"]:
                with contextlib.closing(connect(exporter.address, source)) as s:  # plain HTTP on the TLS port
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                    with contextlib.suppress(OSError):
                        s.recv(1024)
            tls = ssl.create_default_context(cafile=pki / "ca.crt")
            wait_for("both lines", lambda: logs.getvalue().count("TLS handshake failed") >= 2, 10)
            still = httpx.get(f"https://{exporter.address}/-/healthy", verify=tls)
    lines = [line for line in logs.getvalue().splitlines() if "TLS handshake failed" in line]
    assert [line.split("client=")[1].split(":")[0] for line in lines] == ["127.0.0.2", "127.0.0.3"]
    assert still.status_code == 200
