"""The exporter's HTTP server on a free loopback port, against the simulator on another."""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import ssl
import subprocess
import threading
import time

import httpx
import pytest
from exposition import samples, value
from tools import require
from upstream import config_for, running_exporter, running_simulator, static_env

from exporter.config import ConfigError, ScrapeConfig
from exporter.logs import LogfmtFormatter
from exporter.simulator import Faults
from exporter.web import load_web_config

NOW = time.time()


@contextlib.contextmanager
def captured_logs():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_metrics_answers_200_and_reports_a_failing_environment_as_data():
    good = static_env("env_good", 30, NOW)
    bad = static_env("env_bad", 30, NOW, faults=Faults(error_rates={"500": 1.0}))
    with running_simulator(good, bad) as (sim, url):
        sim.pause()
        config = config_for(url, good, bad, api={"max_retries": 1})
        with running_exporter(config) as addr:
            r = httpx.get(f"http://{addr}/metrics")
        truth = sim.truth("env_good")
    assert r.status_code == 200
    body = r.text
    metrics = samples(body)
    assert value(metrics, "anthropic_work_scrape_success", environment_id="env_bad") == 0
    assert value(metrics, "anthropic_work_scrape_success", environment_id="env_good") == 1
    assert 'anthropic_work_items{environment_id="env_bad"' not in body
    for state, count in truth["items"].items():
        assert value(metrics, "anthropic_work_items", environment_id="env_good", state=state) == count
    assert value(metrics, "anthropic_work_api_requests_total", code="500", environment_id="env_bad") == 2
    assert value(metrics, "anthropic_work_exporter_build_info", version="0.1.0") == 1
    assert "process_cpu_seconds_total" in body


def test_probe_serves_one_configured_environment_and_rejects_others():
    a, b = static_env("env_a", 5, NOW), static_env("env_b", 7, NOW)
    with running_simulator(a, b) as (sim, url), running_exporter(config_for(url, a, b)) as addr:
        sim.pause()
        probe = httpx.get(f"http://{addr}/probe", params={"environment_id": "env_b"})
        unknown = httpx.get(f"http://{addr}/probe", params={"environment_id": "env_zzz"})
        missing = httpx.get(f"http://{addr}/probe")
    assert probe.status_code == 200
    assert 'environment_id="env_b"' in probe.text
    assert 'environment_id="env_a"' not in probe.text
    assert "anthropic_work_exporter_build_info" not in probe.text  # exporter metrics live on /metrics
    assert (
        sum(
            value(samples(probe.text), "anthropic_work_items", environment_id="env_b", state=s)
            for s in ("queued", "starting", "active", "stopping", "stopped")
        )
        == 7
    )
    assert unknown.status_code == 400
    assert unknown.text == (
        "400: environment_id 'env_zzz' is not in this exporter's config; "
        "only configured environments can be probed\n"
    )
    assert missing.status_code == 400


def test_the_scrape_timeout_header_is_honoured():
    fast = static_env("env_fast", 10, NOW)
    slow = static_env("env_slow", 10, NOW, faults=Faults(latency_seconds=3.0))
    config = config_for("", fast, slow, scrape=ScrapeConfig(timeout_seconds=20, timeout_offset_seconds=0.25))
    with running_simulator(fast, slow) as (_sim, url):
        config = config_for(url, fast, slow, scrape=config.scrape)
        with running_exporter(config) as addr:
            started = time.monotonic()
            r = httpx.get(
                f"http://{addr}/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.25"}, timeout=10
            )
            elapsed = time.monotonic() - started
    assert r.status_code == 200
    assert 0.9 <= elapsed < 1.25
    assert value(samples(r.text), "anthropic_work_scrape_success", environment_id="env_slow") == 0
    assert value(samples(r.text), "anthropic_work_scrape_success", environment_id="env_fast") == 1


def test_without_the_header_the_configured_timeout_applies():
    slow = static_env("env_slow", 10, NOW, faults=Faults(latency_seconds=3.0))
    with running_simulator(slow) as (_sim, url):
        config = config_for(url, slow, scrape=ScrapeConfig(timeout_seconds=0.5))
        with running_exporter(config) as addr:
            started = time.monotonic()
            r = httpx.get(f"http://{addr}/metrics", timeout=10)
            elapsed = time.monotonic() - started
    assert r.status_code == 200
    assert 0.45 <= elapsed < 1.0
    assert value(samples(r.text), "anthropic_work_scrape_success", environment_id="env_slow") == 0


def test_overlapping_scrapes_share_one_listing_per_environment():
    env = static_env("env_a", 250, NOW, faults=Faults(latency_seconds=0.2))
    with running_simulator(env) as (sim, url), running_exporter(config_for(url, env)) as addr:
        sim.pause()
        results: list[httpx.Response] = []
        threads = [
            threading.Thread(target=lambda: results.append(httpx.get(f"http://{addr}/metrics", timeout=10)))
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [r.status_code for r in results] == [200, 200, 200]
    assert env.requests == 3  # 250 items at 100 a page, fetched once for three scrapes
    active = [
        value(samples(r.text), "anthropic_work_items", environment_id="env_a", state="active")
        for r in results
    ]
    assert len(set(active)) == 1


def test_connections_are_reused_across_pages_and_scrapes():
    env = static_env("env_a", 450, NOW)
    with running_simulator(env) as (sim, url), running_exporter(config_for(url, env)) as addr:
        for _ in range(3):
            assert httpx.get(f"http://{addr}/metrics").status_code == 200
    assert env.requests == 15
    assert sim.connections == 1


def test_openmetrics_negotiation_and_gzip_as_prometheus_client_does():
    env = static_env("env_a", 3, NOW)
    with running_simulator(env) as (_sim, url), running_exporter(config_for(url, env)) as addr:
        om = httpx.get(
            f"http://{addr}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        gz = httpx.get(f"http://{addr}/metrics", headers={"Accept-Encoding": "gzip"})
        raw = httpx.Client().send(
            httpx.Request("GET", f"http://{addr}/metrics", headers={"Accept-Encoding": "gzip"}), stream=True
        )
        compressed = b"".join(raw.iter_raw())
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n")
    assert "# TYPE anthropic_work_heartbeat_age_seconds gaugehistogram" in om.text
    assert gz.headers["content-encoding"] == "gzip"
    assert gzip.decompress(compressed).startswith(b"# HELP")


def test_health_readiness_and_landing_page():
    env = static_env("env_a", 1, NOW)
    with running_simulator(env) as (_sim, url), running_exporter(config_for(url, env)) as addr:
        healthy = httpx.get(f"http://{addr}/-/healthy")
        ready = httpx.get(f"http://{addr}/-/ready")
        landing = httpx.get(f"http://{addr}/")
        missing = httpx.get(f"http://{addr}/nope")
    assert (healthy.status_code, healthy.text) == (200, "Healthy\n")
    assert (ready.status_code, ready.text) == (200, "Ready\n")
    assert '<a href="/metrics">' in landing.text and "/probe?environment_id=env_a" in landing.text
    assert missing.status_code == 404


def test_keys_never_reach_output_or_logs_and_failures_are_logged_once():
    ok = static_env("env_ok", 5, NOW)
    locked = static_env("env_locked", 5, NOW)
    wrong_key = "sk-ant-wrong-key-must-not-leak"
    with running_simulator(ok, locked) as (_sim, url):
        config = config_for(url, ok, locked, keys={"env_locked": wrong_key})
        with captured_logs() as logs, running_exporter(config) as addr:
            bodies = [httpx.get(f"http://{addr}/metrics").text for _ in range(3)]
            bodies.append(httpx.get(f"http://{addr}/probe", params={"environment_id": "env_locked"}).text)
    text = logs.getvalue()
    for secret in (wrong_key, ok.key, locked.key):
        assert secret not in text
        assert all(secret not in b for b in bodies)
    failures = [line for line in text.splitlines() if "listing work failed" in line]
    assert len(failures) == 1, text
    line = failures[0]
    assert "level=warn" in line and "environment_id=env_locked" in line and "reason=http_401" in line
    assert 'error="HTTP 401 authentication_error: invalid authentication credentials (request-id req_' in line
    assert "work-secret" not in "".join(bodies)


def test_output_passes_promtool_check_metrics():
    promtool = require("promtool")
    envs = [static_env("env_a", 40, NOW), static_env("env_b", 0, NOW, faults=Faults(error_rates={"404": 1}))]
    with running_simulator(*envs) as (_sim, url), running_exporter(config_for(url, *envs)) as addr:
        body = httpx.get(f"http://{addr}/metrics").content
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == b""


BCRYPT_PW = "$2y$04$5rdYXI91QPOFthQdfP4jSerUv2iCnvWhLd/KhtLAdmNXDUKCgnHaq"  # "pw", cost 4


def test_basic_auth_from_the_web_config(tmp_path):
    (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  prom: '{BCRYPT_PW}'\n")
    web = load_web_config(tmp_path / "web.yml")
    env = static_env("env_a", 1, NOW)
    with running_simulator(env) as (_sim, url), running_exporter(config_for(url, env), web) as addr:
        anonymous = httpx.get(f"http://{addr}/metrics")
        wrong = httpx.get(f"http://{addr}/metrics", auth=("prom", "nope"))
        unknown = httpx.get(f"http://{addr}/metrics", auth=("root", "pw"))
        right = [httpx.get(f"http://{addr}/metrics", auth=("prom", "pw")) for _ in range(2)]
    assert [anonymous.status_code, wrong.status_code, unknown.status_code] == [401, 401, 401]
    assert anonymous.headers["www-authenticate"] == 'Basic realm="anthropic-work-exporter"'
    assert [r.status_code for r in right] == [200, 200]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path):
    require("openssl")
    d = tmp_path
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.crt"),
    )
    for name, cn in (("server", "127.0.0.1"), ("client", "prometheus")):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={cn}",
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
        )
        (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.crt"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            str(d / "ext.cnf"),
            "-out",
            str(d / f"{name}.crt"),
        )
    return d


@pytest.mark.parametrize("client_ca", [True, False], ids=["client-certificates", "server-only"])
def test_tls(pki, client_ca):
    web_yml = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS12\n"
    (pki / "web.yml").write_text(web_yml + ("  client_ca_file: ca.crt\n" if client_ca else ""))
    web = load_web_config(pki / "web.yml")
    env = static_env("env_a", 1, NOW)
    with running_simulator(env) as (_sim, url), running_exporter(config_for(url, env), web) as addr:
        with_cert = ssl.create_default_context(cafile=pki / "ca.crt")
        with_cert.load_cert_chain(pki / "client.crt", pki / "client.key")
        without_cert = ssl.create_default_context(cafile=pki / "ca.crt")
        good = httpx.get(f"https://{addr}/metrics", verify=with_cert if client_ca else without_cert)
        if client_ca:  # a client without a certificate is refused
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"https://{addr}/metrics", verify=without_cert)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://{addr}/metrics")  # plain HTTP to a TLS port
    assert good.status_code == 200
    assert "anthropic_work_items" in good.text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("basic_auth_users:\n  prom: plaintext\n", "basic_auth_users.prom: must be a bcrypt hash"),
        ("tls_server_config:\n  cert_file: x.crt\n", "tls_server_config: needs both cert_file and key_file"),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: Maybe}\n",
            "tls_server_config.client_auth_type: must be one of",
        ),
        ("tls_server_config: {cert_file: a, key_file: b}\n", "tls_server_config.cert_file: cannot load"),
        ("http_server_config: {http2: true}\n", "http_server_config: unknown or unsupported key"),
    ],
)
def test_web_config_errors_name_the_key(tmp_path, text, expected):
    (tmp_path / "web.yml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_web_config(tmp_path / "web.yml")
    assert any(expected in p for p in info.value.problems), info.value.problems


@pytest.mark.parametrize("concurrency", [1, 3])
def test_environments_are_listed_concurrently_up_to_the_configured_bound(concurrency):
    envs = [static_env(f"env_{n}", 5, NOW, faults=Faults(latency_seconds=0.3)) for n in range(5)]
    with running_simulator(*envs) as (sim, url):
        config = config_for(url, *envs, scrape=ScrapeConfig(concurrency=concurrency))
        with running_exporter(config) as addr:
            r = httpx.get(f"http://{addr}/metrics", timeout=10)
    assert r.status_code == 200
    metrics = samples(r.text)
    assert all(
        value(metrics, "anthropic_work_scrape_success", environment_id=f"env_{n}") == 1 for n in range(5)
    )
    assert sim.max_in_flight == concurrency


def test_name_filters_reach_the_exposition():
    env = static_env("env_a", 3, NOW)
    with running_simulator(env) as (_sim, url), running_exporter(config_for(url, env)) as addr:
        r = httpx.get(f"http://{addr}/metrics", params={"name[]": "anthropic_work_items"})
    names = {line.split("{")[0] for line in r.text.splitlines() if not line.startswith("#")}
    assert names == {"anthropic_work_items"}
