"""The exporter's endpoints on a free loopback port, against the simulator on another: what each
answers, the scrape deadline header, basic auth and TLS."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import gzip
import io
import logging
import math
import re
import ssl
import subprocess
import sys
import time
import warnings
from pathlib import Path

import httpx
import pytest
import yaml
from exposition import samples, value
from htmlpage import Page
from tools import require
from upstream import config_for, running_exporter, running_simulator, static_env

from exporter.config.flags import parse_external_url
from exporter.config.schema import MetricsConfig, ScrapeConfig
from exporter.config.yamldoc import ConfigError
from exporter.logs import LogfmtFormatter
from exporter.simulator import Faults
from exporter.simulator.world import Profile
from exporter.web.app import MAX_SCRAPE_TIMEOUT_SECONDS, scrape_budget
from exporter.web.auth import BasicAuth, load_web_config

NOW = time.time()
ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules" / "anthropic-work.rules.yml"
BCRYPT_PW = "$2y$04$5rdYXI91QPOFthQdfP4jSerUv2iCnvWhLd/KhtLAdmNXDUKCgnHaq"  # "pw", cost 4


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
        with running_exporter(config) as exporter:
            r = httpx.get(f"http://{exporter.address}/metrics")
        truth = sim.truth("env_good")
    assert r.status_code == 200
    body = r.text
    metrics = samples(body)
    assert value(metrics, "anthropic_work_scrape_success", environment_id="env_bad") == 0
    assert value(metrics, "anthropic_work_scrape_success", environment_id="env_good") == 1
    assert 'anthropic_work_items{environment_id="env_bad"' not in body
    for state, count in truth["items"].items():
        assert value(metrics, "anthropic_work_items", environment_id="env_good", state=state) == count
    # Two tries of the listing and two of work/stats, all 500.
    assert value(metrics, "anthropic_work_api_requests_total", code="500", environment_id="env_bad") == 4
    assert value(metrics, "anthropic_work_stats_success", environment_id="env_bad") == 0
    assert value(metrics, "anthropic_work_exporter_build_info", version="0.1.0") == 1
    assert "process_cpu_seconds_total" in body


def test_probe_serves_one_configured_environment_and_rejects_others():
    a, b = static_env("env_a", 5, NOW), static_env("env_b", 7, NOW)
    with running_simulator(a, b) as (sim, url), running_exporter(config_for(url, a, b)) as exporter:
        sim.pause()
        probe = httpx.get(f"http://{exporter.address}/probe", params={"environment_id": "env_b"})
        unknown = httpx.get(f"http://{exporter.address}/probe", params={"environment_id": "env_zzz"})
        missing = httpx.get(f"http://{exporter.address}/probe")
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
        "400: environment_id 'env_zzz' is not watched by this exporter: only environments "
        "in its config, or discovered, in its shard can be probed\n"
    )
    assert missing.status_code == 400


@pytest.mark.parametrize(
    ("header", "budget"),
    [
        ("20", 19.75),
        ("0.3", 0.1),  # never less than a tenth of a second
        (None, 10.0),  # no header: scrape.timeout_seconds
        ("", 10.0),
        ("garbage", 10.0),
        ("-5", 10.0),
        ("0", 10.0),
        ("nan", 10.0),
        ("inf", 10.0),
        ("1e308", 10.0),
        (str(MAX_SCRAPE_TIMEOUT_SECONDS + 1), 10.0),
    ],
)
def test_the_scrape_timeout_header_is_read_defensively(header, budget):
    scrape = ScrapeConfig(timeout_seconds=10, timeout_offset_seconds=0.25)
    assert math.isclose(scrape_budget(header, scrape), budget)


@pytest.mark.parametrize("header", ["1e308", "inf", "nan", "-1", "x"])
def test_a_hostile_timeout_header_still_gets_a_scrape(header):
    env = static_env("env_a", 3, NOW)
    with running_simulator(env) as (_sim, url), running_exporter(config_for(url, env)) as exporter:
        r = httpx.get(
            f"http://{exporter.address}/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": header}
        )
    assert r.status_code == 200
    assert value(samples(r.text), "anthropic_work_scrape_success", environment_id="env_a") == 1


def test_connections_are_reused_across_pages_and_scrapes():
    env = static_env("env_a", 450, NOW)
    with running_simulator(env) as (sim, url), running_exporter(config_for(url, env)) as exporter:
        for _ in range(3):
            assert httpx.get(f"http://{exporter.address}/metrics").status_code == 200
    assert env.requests == 15 + 3  # 5 pages and one work/stats request per scrape
    assert sim.connections == 2  # the listing and work/stats side by side, each kept alive


def test_openmetrics_negotiation_and_gzip_as_prometheus_client_does():
    env = static_env("env_a", 3, NOW)
    with running_simulator(env) as (_sim, url), running_exporter(config_for(url, env)) as exporter:
        om = httpx.get(
            f"http://{exporter.address}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        )
        gz = httpx.get(f"http://{exporter.address}/metrics", headers={"Accept-Encoding": "gzip"})
        raw = httpx.Client().send(
            httpx.Request("GET", f"http://{exporter.address}/metrics", headers={"Accept-Encoding": "gzip"}),
            stream=True,
        )
        compressed = b"".join(raw.iter_raw())
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n")
    assert "# TYPE anthropic_work_heartbeat_age_seconds gaugehistogram" in om.text
    assert gz.headers["content-encoding"] == "gzip"
    assert gzip.decompress(compressed).startswith(b"# HELP")


def test_health_readiness_and_landing_page():
    env = static_env("env_a", 1, NOW)
    with running_simulator(env) as (_sim, url), running_exporter(config_for(url, env)) as exporter:
        healthy = httpx.get(f"http://{exporter.address}/-/healthy")
        ready = httpx.get(f"http://{exporter.address}/-/ready")
        before = httpx.get(f"http://{exporter.address}/")
        httpx.get(f"http://{exporter.address}/metrics")
        landing = httpx.get(f"http://{exporter.address}/")
        missing = httpx.get(f"http://{exporter.address}/nope")
        posted = httpx.post(f"http://{exporter.address}/metrics")
        reload_by_get = httpx.get(f"http://{exporter.address}/-/reload")
    assert (healthy.status_code, healthy.text) == (200, "Healthy\n")
    assert (ready.status_code, ready.text) == (200, "Ready\n")
    (waiting,) = Page(before.text).table("environments").records()
    assert (waiting["status"].text, waiting["last listing"].text) == ("not listed yet", "")
    page = Page(landing.text)
    assert page.links["/metrics"] == "/metrics" and page.links["the runbooks"] == "/docs/runbooks"
    (row,) = page.table("environments").records()
    assert list(row) == [
        "environment",
        "name",
        "status",
        "last listing",
        "queued",
        "starting",
        "active",
        "stopping",
        "stopped",
        "debug page",
    ]
    assert row["environment"].links == ["/probe?environment_id=env_a"]
    assert (row["status"].text, row["status"].classes) == ("ok", {"status", "ok"})
    assert re.fullmatch(r"\d+ s ago", row["last listing"].text)
    (when,) = row["last listing"].inner
    assert (
        re.fullmatch(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ", when["title"]) and when["datetime"] == when["title"]
    )
    assert [row[s].text for s in ("queued", "starting", "active", "stopping", "stopped")] == [
        "1",
        "0",
        "0",
        "0",
        "0",
    ]
    assert row["debug page"].links == ["/probe?environment_id=env_a&debug=true"]
    assert "<h1>anthropic-work-exporter 0.1.0</h1>" in landing.text
    families = {r["family"].text: r for r in page.tables[-1].records()}
    for family in (
        "anthropic_work_items",
        "anthropic_work_transitions_total",  # counters by the names a scrape shows
        "anthropic_work_api_requests_total",
        "process_cpu_seconds_total",
        "anthropic_work_exporter_build_info",
    ):
        assert families[family]["meaning"].text  # with its type and help
    assert "anthropic_work_transitions" not in families
    assert families["anthropic_work_state_age_seconds"]["type"].text == "gaugehistogram"
    assert "<p>Config: loaded at 20" in landing.text
    assert missing.status_code == 404
    assert (posted.status_code, posted.headers["allow"]) == (405, "GET, HEAD")
    assert (reload_by_get.status_code, reload_by_get.headers["allow"]) == (405, "POST, PUT")


def test_the_landing_page_tells_a_failing_environment_by_colour_and_word_with_its_reason():
    good, gone = static_env("env_good", 2, NOW), static_env("env_gone", 1, NOW)  # gone: its key is refused
    with running_simulator(good) as (_sim, url), running_exporter(config_for(url, good, gone)) as exporter:
        httpx.get(f"http://{exporter.address}/metrics")
        rows = {
            r["environment"].text: r
            for r in Page(httpx.get(f"http://{exporter.address}/").text).table("environments").records()
        }
    assert (rows["env_good"]["status"].text, rows["env_good"]["status"].classes) == ("ok", {"status", "ok"})
    failing = rows["env_gone"]["status"]
    assert (failing.text, failing.classes) == ("failing (http_401)", {"status", "failed"})
    assert [rows["env_gone"][s].text for s in ("queued", "active")] == ["", ""]  # nothing listed


def test_links_start_with_the_external_url_and_the_runbooks_are_served():
    env = static_env("env_a", 1, NOW)
    base = "https://example.com/work-exporter"
    with (
        running_simulator(env) as (_sim, url),
        running_exporter(config_for(url, env), external_url=base) as exporter,
    ):
        landing = Page(httpx.get(f"http://{exporter.address}/").text)
        runbooks = httpx.get(f"http://{exporter.address}/docs/runbooks")
        debug = httpx.get(
            f"http://{exporter.address}/probe",
            params={"environment_id": "env_a", "debug": "true"},
            headers={"Accept": "text/html"},
        )
    assert landing.links["the runbooks"] == f"{base}/docs/runbooks"
    (row,) = landing.table("environments").records()
    assert row["debug page"].links == [f"{base}/probe?environment_id=env_a&debug=true"]
    assert Page(debug.text).links["runbooks"] == f"{base}/docs/runbooks"
    assert runbooks.status_code == 200 and runbooks.headers["content-type"] == "text/html; charset=utf-8"
    ids = Page(runbooks.text).ids
    alerts = [
        r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r
    ]
    assert {alert.lower() for alert in alerts} <= set(ids)  # every runbook_url's anchor


def test_the_runbooks_page_is_what_docs_runbooks_md_makes():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/runbooks.py"), "--check"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("ftp://example.com", "want an absolute http(s) URL"),
        ("/work-exporter", "want an absolute http(s) URL"),
        ("https://example.com/x?y=1", "without ?query or #fragment"),
        ('https://example.com/"x', "without spaces, quotes or <>"),
    ],
)
def test_a_bad_external_url_is_refused_naming_the_flag(value, problem):
    with pytest.raises(ValueError, match=r"--web\.external-url") as refused:
        parse_external_url(value)
    assert problem in str(refused.value)


@pytest.mark.parametrize(
    ("path", "status", "content_type"),
    [
        ("/metrics", 200, "text/plain; version=0.0.4; charset=utf-8"),
        ("/probe?environment_id=env_a", 200, "text/plain; version=0.0.4; charset=utf-8"),
        ("/probe?environment_id=env_nope", 400, "text/plain; charset=utf-8"),
        ("/-/healthy", 200, "text/plain; charset=utf-8"),
        ("/-/ready", 200, "text/plain; charset=utf-8"),
        ("/", 200, "text/html; charset=utf-8"),
        ("/nope", 404, "text/plain; charset=utf-8"),
    ],
)
def test_head_works_on_every_endpoint_and_lists_nothing(path, status, content_type):
    env = static_env("env_a", 1, NOW)
    with running_simulator(env) as (_sim, url), running_exporter(config_for(url, env)) as exporter:
        r = httpx.head(f"http://{exporter.address}{path}")
    assert (r.status_code, r.headers["content-type"], r.content) == (status, content_type, b"")
    assert env.requests == 0


def test_keys_never_reach_output_or_logs_and_failures_are_logged_once():
    ok = static_env("env_ok", 5, NOW, faults=Faults(leak_secrets=True))
    locked = static_env("env_locked", 5, NOW)
    wrong_key = "sk-ant-wrong-key-must-not-leak"
    with running_simulator(ok, locked) as (_sim, url):
        config = config_for(url, ok, locked, keys={"env_locked": wrong_key})
        with captured_logs() as logs, running_exporter(config) as exporter:
            bodies = [httpx.get(f"http://{exporter.address}/metrics").text for _ in range(3)]
            bodies.append(
                httpx.get(f"http://{exporter.address}/probe", params={"environment_id": "env_locked"}).text
            )
    text = logs.getvalue()
    for secret in (wrong_key, ok.key, locked.key):
        assert secret not in text
        assert all(secret not in b for b in bodies)
    failures = [line for line in text.splitlines() if "listing work failed" in line]
    assert len(failures) == 1, text
    line = failures[0]
    assert "level=warn" in line and "environment_id=env_locked" in line and "reason=http_401" in line
    assert 'error="HTTP 401 authentication_error: invalid authentication credentials (request-id req_' in line
    # The API sent each item's secret (a credential payload); not one reached the output.
    assert all(env_item.id not in "".join(bodies) for env_item in ok.items)
    assert "work-secret-" not in "".join(bodies) + text


def test_output_passes_promtool_check_metrics():
    promtool = require("promtool")
    envs = [static_env("env_a", 40, NOW), static_env("env_b", 0, NOW, faults=Faults(error_rates={"404": 1}))]
    with running_simulator(*envs) as (_sim, url), running_exporter(config_for(url, *envs)) as exporter:
        body = httpx.get(f"http://{exporter.address}/metrics").content
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == b""


def test_basic_auth_from_the_web_config(tmp_path):
    (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  prom: '{BCRYPT_PW}'\n")
    web = load_web_config(tmp_path / "web.yml")
    env = static_env("env_a", 1, NOW)
    with running_simulator(env) as (_sim, url), running_exporter(config_for(url, env), web) as exporter:
        base = f"http://{exporter.address}/metrics"
        anonymous = httpx.get(base)
        wrong = httpx.get(base, auth=("prom", "nope"))
        unknown = httpx.get(base, auth=("root", "pw"))
        right = [httpx.get(base, auth=("prom", "pw")) for _ in range(2)]
        head = httpx.head(f"http://{exporter.address}/-/healthy")
    assert [anonymous.status_code, wrong.status_code, unknown.status_code, head.status_code] == [401] * 4
    assert anonymous.headers["www-authenticate"] == 'Basic realm="anthropic-work-exporter"'
    assert [r.status_code for r in right] == [200, 200]
    assert env.requests == 4  # only the two authorised scrapes asked (a page and work/stats each)


def test_an_unknown_user_costs_the_same_bcrypt_check_as_a_wrong_password():
    checked: list[bytes] = []

    def checkpw(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return False

    auth = BasicAuth({"prom": BCRYPT_PW}, checkpw=checkpw)
    assert not auth.allows("Basic " + base64.b64encode(b"prom:nope").decode())
    assert not auth.allows("Basic " + base64.b64encode(b"root:pw").decode())
    assert len(checked) == 2
    # The stand-in hash for unknown users is a bcrypt hash of the configured cost: the same work.
    assert checked[0] == BCRYPT_PW.encode()
    assert checked[1].split(b"$")[2] == b"04" and checked[1] != checked[0]


@pytest.mark.parametrize("client_ca", [True, False], ids=["client-certificates", "server-only"])
def test_tls(pki, client_ca):
    web_yml = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS12\n"
    (pki / "web.yml").write_text(web_yml + ("  client_ca_file: ca.crt\n" if client_ca else ""))
    web = load_web_config(pki / "web.yml")
    env = static_env("env_a", 1, NOW)
    with running_simulator(env) as (_sim, url), running_exporter(config_for(url, env), web) as exporter:
        with_cert = ssl.create_default_context(cafile=pki / "ca.crt")
        with_cert.load_cert_chain(pki / "client.crt", pki / "client.key")
        without_cert = ssl.create_default_context(cafile=pki / "ca.crt")
        good = httpx.get(
            f"https://{exporter.address}/metrics", verify=with_cert if client_ca else without_cert
        )
        if client_ca:  # a client without a certificate is refused
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"https://{exporter.address}/metrics", verify=without_cert)
    assert good.status_code == 200
    assert "anthropic_work_items" in good.text


def _old_tls_client() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # old on purpose: that is the test
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    with contextlib.suppress(ssl.SSLError):
        context.set_ciphers("ALL:@SECLEVEL=0")
    return context


@pytest.mark.parametrize(
    ("client", "reason"),
    # What OpenSSL names an old client's failure depends on the client's own build: any reason will do.
    [("plain-http", "error=HTTP_REQUEST"), ("tls-1.1", "error=")],
)
def test_a_failed_tls_handshake_is_one_log_line(pki, client, reason):
    (pki / "web.yml").write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    web = load_web_config(pki / "web.yml")
    env = static_env("env_a", 1, NOW)
    with (
        running_simulator(env) as (_sim, url),
        captured_logs() as logs,
        running_exporter(config_for(url, env), web) as exporter,
    ):
        with pytest.raises(httpx.HTTPError):
            if client == "plain-http":
                httpx.get(f"http://{exporter.address}/metrics")
            else:
                httpx.get(f"https://{exporter.address}/metrics", verify=_old_tls_client())
        still = httpx.get(
            f"https://{exporter.address}/-/healthy", verify=ssl.create_default_context(cafile=pki / "ca.crt")
        )
    lines = [line for line in logs.getvalue().splitlines() if "TLS" in line or "Traceback" in line]
    assert len(lines) == 1, logs.getvalue()
    assert 'msg="TLS handshake failed"' in lines[0] and reason in lines[0]
    assert still.status_code == 200


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("basic_auth_users:\n  prom: plaintext\n", ["2: basic_auth_users.prom: must be a bcrypt hash"]),
        (
            "tls_server_config:\n  cert_file: x.crt\n",
            ["1: tls_server_config: needs both cert_file and key_file"],
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: Maybe}\n",
            ["1: tls_server_config.client_auth_type: must be one of"],
        ),
        (
            "tls_server_config:\n  cert_file: a.crt\n  key_file: b\n",
            ["2: tls_server_config.cert_file: no such file: {dir}/a.crt"],
        ),
        (
            "tls_server_config:\n  cert_file: web.yml\n  key_file: web.yml\n",
            ["2: tls_server_config.cert_file: cannot load {dir}/web.yml with {dir}/web.yml: "],
        ),
        (
            "http_server_config: {http2: true}\nbasic_auth_users: []\nbasic_auth_users: {}\n",
            [
                "1: http_server_config: unknown or unsupported key",
                "3: basic_auth_users: duplicate key",  # the value kept is the last one, {}
                "3: basic_auth_users: must map user names to bcrypt hashes",
            ],
        ),
        ("tls_server_config: [\n", ["2: invalid YAML: "]),
        (
            "tls_server_config: {cert_file: a, key_file: b, min_version: [TLS12]}\n",
            ["1: tls_server_config.min_version: must be a non-empty string"],
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: [x]}\n",
            ["1: tls_server_config.client_auth_type: must be a non-empty string"],
        ),
        (
            "tls_server_config:\n  cert_file: 123\n  key_file: {a: b}\n",
            [
                "2: tls_server_config.cert_file: must be a non-empty string",
                "3: tls_server_config.key_file: must be a non-empty string",
            ],
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, max_version: TLS99}\n",
            ["1: tls_server_config.max_version: must be one of"],
        ),
        (
            "basic_auth_users:\n  a: '$2b$03$" + "x" * 53 + "'\n  b: '$2b$32$" + "x" * 53 + "'\n",
            [
                "2: basic_auth_users.a: a bcrypt cost must be from 4 to 31, this one is 3",
                "3: basic_auth_users.b: a bcrypt cost must be from 4 to 31, this one is 32",
            ],
        ),
        ("basic_auth_users:\n  a: '$2b$10$short'\n", ["2: basic_auth_users.a: must be a bcrypt hash"]),
        ("basic_auth_users:\n  1: '" + BCRYPT_PW + "'\n", ["2: basic_auth_users.1: a user name must be"]),
    ],
)
def test_web_config_errors_give_file_line_and_key_in_line_order(tmp_path, text, expected):
    """Checked as the main config is: every problem at once, `file:LINE: key: what`, files named."""
    (tmp_path / "web.yml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_web_config(tmp_path / "web.yml")
    problems = info.value.problems
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(f"{tmp_path / 'web.yml'}:" + start.format(dir=tmp_path)), problems


def test_name_filters_reach_the_exposition():
    env = static_env("env_a", 3, NOW)
    with running_simulator(env) as (_sim, url), running_exporter(config_for(url, env)) as exporter:
        r = httpx.get(f"http://{exporter.address}/metrics", params={"name[]": "anthropic_work_items"})
    names = {line.split("{")[0] for line in r.text.splitlines() if not line.startswith("#")}
    assert names == {"anthropic_work_items"}


def test_a_name_filter_without_per_environment_families_lists_nothing():
    env = static_env("env_a", 3, NOW)
    with running_simulator(env) as (_sim, url), running_exporter(config_for(url, env)) as exporter:
        r = httpx.get(f"http://{exporter.address}/metrics", params={"name[]": "process_cpu_seconds_total"})
    assert r.status_code == 200
    assert "process_cpu_seconds_total" in r.text and "anthropic_work_items" not in r.text
    assert env.requests == 0


def _series_per_environment(text: str, environment_id: str) -> dict[str, int]:
    """Series of one environment per family, by the family's exposed name (counters with _total)."""
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE "))
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("#") or f'environment_id="{environment_id}"' not in line:
            continue
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)  # type: ignore[union-attr]
        for suffix in ("_bucket", "_gcount", "_gsum", "_count", "_sum"):
            if name.endswith(suffix) and name.removesuffix(suffix) in types:
                name = name.removesuffix(suffix)
        out[name] = out.get(name, 0) + 1
    return out


def _family_of(name: str) -> str:
    return name.removesuffix("_gcount").removesuffix("_gsum")


def _readme_metrics() -> dict[str, str]:
    """The README's metrics table: name -> its 'series per environment' cell."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("| name | type | labels | series per environment | meaning |")[1].split("\n\n")[0]
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    return {row[0].removeprefix("| `").removesuffix("`"): row[3] for row in rows}


def test_the_readme_metrics_table_is_what_metrics_exposes_both_ways_with_the_series_per_environment():
    env = static_env("env_a", 5, NOW, profile=Profile(arrivals_per_second=0.0))  # 4 workers polling
    with running_simulator(env) as (_sim, url), running_exporter(config_for(url, env)) as exporter:
        httpx.get(f"http://{exporter.address}/metrics")
        text = httpx.get(f"http://{exporter.address}/metrics").text
    typed = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE anthropic_work_")}
    # A gauge histogram's _gcount and _gsum have TYPE lines of their own in the text format.
    exposed = {name for name in typed if _family_of(name) == name or _family_of(name) not in typed}
    listed = _readme_metrics()
    assert set(listed) == exposed
    counted = _series_per_environment(text, "env_a")
    said = {name: int(re.match(r"\d+", cell).group(0)) for name, cell in listed.items() if cell[0].isdigit()}  # type: ignore[union-attr]
    assert {name: counted.get(name, 0) for name in said} == said
    assert set(counted) <= set(said)  # every family with series of an environment says how many
    readme = (ROOT / "README.md").read_text()
    total = int(re.search(r"an environment has \*\*(\d+) series\*\*", readme).group(1))  # type: ignore[union-attr]
    assert sum(counted.values()) == total == sum(said.values())
    # The families the bundled rules read, as the README lists them.
    sentence = readme.split("The bundled rules read ")[1].split(";")[0]
    named = {f"anthropic_work_{name}" for name in re.findall(r"`([a-z_]*[a-z])`", sentence)}
    rules = RULES.read_text()
    read = {
        name for name in listed if name in said and re.search(rf"\b{name}(_bucket|_gcount|_count)?\b", rules)
    }
    assert named == read


def test_excluded_families_are_left_out_whole_and_the_rest_stay_exact():
    env = static_env("env_a", 5, NOW, profile=Profile(arrivals_per_second=0.0))  # 4 workers polling
    left_out = ("anthropic_work_state_age_seconds", "anthropic_work_api_requests_total")
    with running_simulator(env) as (_sim, url):
        base = config_for(url, env)
        config = dataclasses.replace(base, metrics=MetricsConfig(exclude=left_out))
        configs = [config]
        with running_exporter(config, load=lambda: (configs[-1], None)) as exporter:
            text = httpx.get(f"http://{exporter.address}/metrics").text
            om = httpx.get(
                f"http://{exporter.address}/metrics", headers={"Accept": "application/openmetrics-text"}
            ).text
            filtered = httpx.get(
                f"http://{exporter.address}/metrics", params={"name[]": "anthropic_work_api_requests_total"}
            ).text
            landing = httpx.get(f"http://{exporter.address}/").text
            configs.append(base)
            assert exporter.reload() == []
            back = httpx.get(f"http://{exporter.address}/metrics").text
    for body in (text, om, filtered):
        assert "anthropic_work_state_age_seconds" not in body and "anthropic_work_api_requests" not in body
    assert "anthropic_work_state_age_seconds" not in landing
    counted = _series_per_environment(text, "env_a")
    expected = {n: int(c.split()[0].rstrip(":;")) for n, c in _readme_metrics().items() if c[0].isdigit()}
    assert counted == {n: v for n, v in expected.items() if n not in left_out and v}
    items = [
        value(samples(t), "anthropic_work_items", environment_id="env_a", state="queued")
        for t in (text, back)
    ]
    assert items[0] == items[1] is not None
    assert _series_per_environment(back, "env_a")["anthropic_work_state_age_seconds"] == 64
