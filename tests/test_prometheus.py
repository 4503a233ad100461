"""Proof with the real programs: Prometheus scrapes `--demo`, every dashboard and README query returns data,
and a stale-heartbeat alert goes through a real Alertmanager to a webhook on loopback.

The demo's dying-workers environment is where the stale heartbeat happens: its
simulated workers die mid-session and stop heartbeating.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
import yaml
from loopback import loopback_server
from processes import exporter_process, free_port, running, wait_for
from tools import query, require
from upstream import DEMO_ENVS

pytestmark = pytest.mark.slow  # a real Prometheus and Alertmanager scraping --demo

ROOT = Path(__file__).parent.parent
DYING = "env_01demoDyingWorkers000"
JOB = "anthropic-work"
SCRAPE_INTERVAL = 2


@contextlib.contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    with loopback_server(Handler) as server:
        yield f"http://127.0.0.1:{server.server_port}/alerts", received


def fast_rules(tmp: Path) -> Path:
    """The bundled rules, with every `for` cut to one second so the test need not wait minutes."""
    rules = yaml.safe_load((ROOT / "rules" / "anthropic-work.rules.yml").read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    path = tmp / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    prometheus, alertmanager = require("prometheus"), require("prometheus-alertmanager")
    tmp = tmp_path_factory.mktemp("prometheus")
    with exporter_process("--demo", cwd=tmp) as (exporter_url, _log), webhook_receiver() as (hook, received):
        am_port, prom_port = free_port(), free_port()
        (tmp / "alertmanager.yml").write_text(
            yaml.safe_dump(
                {
                    "route": {
                        "receiver": "test",
                        "group_by": ["alertname", "environment_id"],
                        "group_wait": "1s",
                        "group_interval": "1s",
                        "repeat_interval": "1h",
                    },
                    "receivers": [
                        {"name": "test", "webhook_configs": [{"url": hook, "send_resolved": False}]}
                    ],
                }
            )
        )
        (tmp / "prometheus.yml").write_text(
            yaml.safe_dump(
                {
                    "global": {
                        "scrape_interval": f"{SCRAPE_INTERVAL}s",
                        "scrape_timeout": f"{SCRAPE_INTERVAL}s",
                        "evaluation_interval": "1s",
                    },
                    "rule_files": [str(fast_rules(tmp))],
                    "alerting": {
                        "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
                    },
                    "scrape_configs": [
                        {
                            "job_name": JOB,
                            "static_configs": [{"targets": [exporter_url.removeprefix("http://")]}],
                        }
                    ],
                }
            )
        )
        am_args = [
            alertmanager,
            f"--config.file={tmp / 'alertmanager.yml'}",
            f"--storage.path={tmp / 'am'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ]
        prom_args = [
            prometheus,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--enable-feature=exemplar-storage",  # what a dashboard's exemplars need
        ]
        with (
            running(am_args, tmp / "am.log", f"http://127.0.0.1:{am_port}/-/ready"),
            running(prom_args, tmp / "prom.log", f"http://127.0.0.1:{prom_port}/-/ready"),
        ):
            api = f"http://127.0.0.1:{prom_port}/api/v1"
            # Enough scrapes for rate() to have two samples in every series.
            wait_for(
                "three successful scrapes of every demo environment",
                lambda: (
                    len(query(api, f'count_over_time(anthropic_work_scrape_success{{job="{JOB}"}}[1m]) >= 3'))
                    == 3
                ),
                90,
            )
            # The demo's busy environment is rate-limited now and then (5 % of pages); the 429
            # panel has data once one happened and was scraped twice.
            wait_for(
                "a 429 in the demo, scraped twice",
                lambda: query(
                    api,
                    f'count_over_time(anthropic_work_api_requests_total{{job="{JOB}", code="429"}}[1m]) >= 2',
                ),
                90,
            )
            yield {"api": api, "received": received, "exporter": exporter_url}


def fill(expr: str, environment_regex: str) -> str:
    """Template variables as Grafana fills them: All is the regex of every value."""
    return (
        expr.replace("$job", JOB)
        .replace("$environment_id", environment_regex)
        .replace("$__rate_interval", f"{4 * SCRAPE_INTERVAL}s")
    )


DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))


def dashboard_targets() -> list[tuple[str, str, str, bool]]:
    """(dashboard, panel title, expr, whether the panel sits in a row repeated per environment)."""
    out = []
    for path in DASHBOARDS:
        repeated = False
        for top in json.loads(path.read_text())["panels"]:
            if top["type"] == "row":
                repeated = top.get("repeat") == "environment_id"
            for panel in [top, *top.get("panels", [])]:
                out.extend((path.stem, panel["title"], t["expr"], repeated) for t in panel.get("targets", []))
    return out


TARGETS = dashboard_targets()


@pytest.mark.parametrize(
    ("dashboard", "panel", "expr", "repeated"), TARGETS, ids=[f"{d}:{p}:{e[:30]}" for d, p, e, _ in TARGETS]
)
def test_every_dashboard_query_returns_data_from_a_real_prometheus(stack, dashboard, panel, expr, repeated):
    everything = "|".join(DEMO_ENVS)
    assert query(stack["api"], fill(expr, everything)), f"{dashboard} / {panel}: no data for {expr}"
    if repeated:  # a row repeated per environment: each environment's copy has data
        for env_id in DEMO_ENVS:
            assert query(stack["api"], fill(expr, env_id)), f"{dashboard} / {panel}: no data for {env_id}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_template_variable_queries_find_the_job_and_every_environment_by_its_name(stack, path):
    """As Grafana runs them: label_values for the job; for the environment, query_result and the
    variable's regex, whose named groups make the id the value and the display name the text."""
    variables = {v["name"]: v for v in json.loads(path.read_text())["templating"]["list"]}
    jobs = httpx.get(
        f"{stack['api']}/label/job/values", params={"match[]": "anthropic_work_scrape_success"}
    ).json()["data"]
    assert jobs == [JOB]
    environment = variables["environment_id"]
    inner = environment["query"]["query"].removeprefix("query_result(").removesuffix(")").replace("$job", JOB)
    lines = [
        "{" + ",".join(f'{k}="{v}"' for k, v in sorted(r["metric"].items())) + "}"
        for r in query(stack["api"], inner)
    ]
    pattern = re.compile(environment["regex"].strip("/").replace("(?<", "(?P<"))
    found = {m["value"]: m["text"] for m in map(pattern.search, lines) if m}
    assert found == {
        "env_01demoBusySandboxes00": "busy-sandboxes",
        "env_01demoIdleSandboxes00": "idle-sandboxes",
        "env_01demoDyingWorkers000": "dying-workers",
    }


@pytest.mark.parametrize("histogram", ["queue_wait", "run_duration"])
def test_exemplars_of_the_flow_histograms_reach_prometheus(stack, histogram):
    """Prometheus with exemplar storage, scraping --demo in OpenMetrics: the buckets carry work and
    session ids, as the overview's panels show them."""
    expr = f'anthropic_work_{histogram}_seconds_bucket{{job="{JOB}"}}'

    def exemplars() -> list[dict]:
        answer = httpx.get(
            f"{stack['api']}/query_exemplars", params={"query": expr, "start": "0", "end": "4102444800"}
        ).json()
        assert answer["status"] == "success", answer
        return [e for series in answer["data"] for e in series["exemplars"]]

    found = wait_for(f"exemplars of {histogram}", exemplars, 120)
    for exemplar in found:
        assert set(exemplar["labels"]) <= {"work_id", "session_id"} and exemplar["labels"]["work_id"]
        assert float(exemplar["value"]) >= 0
    assert any(e["labels"].get("session_id", "").startswith("session_") for e in found)


def test_recording_rules_produce_series(stack):
    rules = yaml.safe_load((ROOT / "rules" / "anthropic-work.rules.yml").read_text())
    records = [r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r]
    assert len(records) == 5
    for record in records:
        wait_for(record, lambda r=record: query(stack["api"], r), 30)


def test_a_stale_heartbeat_alert_reaches_alertmanager_and_the_webhook(stack):
    def delivered() -> list[dict]:
        return [
            a
            for payload in stack["received"]
            for a in payload["alerts"]
            if a["labels"]["alertname"] == "AnthropicWorkStaleHeartbeat"
            and a["labels"]["environment_id"] == DYING
        ]

    (alert, *_) = wait_for("AnthropicWorkStaleHeartbeat at the webhook", delivered, 90)
    assert alert["status"] == "firing"
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["job"] == JOB and alert["labels"]["state"] == "active"
    assert alert["annotations"]["summary"].endswith(f"in environment {DYING}")
    assert alert["annotations"]["runbook_url"] == "docs/runbooks.md#anthropicworkstaleheartbeat"
    # The runbook's next step: the debug page the alert links to names the stale items and sessions.
    debug_page = alert["annotations"]["debug_page"]
    assert debug_page == f"/probe?environment_id={DYING}&debug=true"
    page = httpx.get(stack["exporter"] + debug_page, timeout=30).text
    stale = page.split("## Heartbeat older than 90 s: ")[1].split("\n\n")[0].splitlines()[1:]
    assert stale, page[-2000:]
    states = []
    for line in stale:
        work_id, _, session, state, *_ = line.split()
        assert work_id.startswith("work_") and session.startswith("session_")
        states.append(state)
    # The alert's items (active) among them; a dead worker's item asked to stop is listed too.
    assert "active" in states and set(states) <= {"starting", "active", "stopping"}
    # The healthy environments' workers heartbeat: no stale-heartbeat alert for them.
    busy = [
        a
        for p in stack["received"]
        for a in p["alerts"]
        if a["labels"].get("environment_id") == DEMO_ENVS[0] and "StaleHeartbeat" in a["labels"]["alertname"]
    ]
    assert busy == []


def readme_queries() -> list[str]:
    """Every query in the README's ```promql blocks; an indented line, or one that starts with
    an operator, continues the query above it."""
    queries: list[str] = []
    for block in re.findall(r"```promql\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        for n, line in enumerate(block.splitlines()):
            continues = n > 0 and (line[:1].isspace() or re.match(r"(-|\+|/|\*|and |or |unless )", line))
            if continues:
                queries[-1] += "\n" + line
            elif line.strip():
                queries.append(line)
    return queries


README_QUERIES = readme_queries()
# A comparison or a set operator filters (label matchers aside): the demo may have nothing to show.
FILTERS = re.compile(r"==|!=|[<>]=?\s*\d|\b(and|unless)\b")


@pytest.mark.parametrize("expr", README_QUERIES, ids=[q.split("\n")[0][:50] for q in README_QUERIES])
def test_every_readme_query_runs_on_a_real_prometheus_with_data(stack, expr):
    result = query(stack["api"], expr)  # asserts that Prometheus accepted it
    if not FILTERS.search(re.sub(r"\{[^}]*\}", "", expr)):
        assert result, f"no data for the README's query:\n{expr}"
    for name in set(re.findall(r"\banthropic_work_[a-z0-9_]+", expr)):
        assert query(stack["api"], f"count({name})"), f"{name} has no series"


def test_the_readme_has_queries_to_check():
    assert len(README_QUERIES) >= 15 and any("ignoring (le)" in q for q in README_QUERIES)


AUTOSCALING = ROOT / "deploy" / "autoscaling"
EXAMPLE_ENV = "env_011CZkZ9X2dpNyB7HsEFoRfW"  # the examples' placeholder for the operator's environment
BUSY = DEMO_ENVS[0]


def autoscaling_queries() -> list[str]:
    """KEDA's trigger queries, and prometheus-adapter's rules as the adapter expands them for the HPA."""
    scaled = yaml.safe_load((AUTOSCALING / "keda-scaledobject.yaml").read_text())
    queries = [t["metadata"]["query"] for t in scaled["spec"]["triggers"]]
    adapter = yaml.safe_load((AUTOSCALING / "prometheus-adapter-rules.yaml").read_text())
    for rule in adapter["externalRules"]:
        series = rule["seriesQuery"].split("{")[0]
        queries.append(
            rule["metricsQuery"]
            .replace("<<.Series>>", series)
            .replace("<<.LabelMatchers>>", f'environment_id="{EXAMPLE_ENV}"')
            .replace("<<.GroupBy>>", "environment_id")
        )
    return queries


AUTOSCALING_QUERIES = autoscaling_queries()


@pytest.mark.parametrize("expr", AUTOSCALING_QUERIES, ids=[q[:50] for q in AUTOSCALING_QUERIES])
def test_every_autoscaling_query_returns_data_for_an_environment(stack, expr):
    """With the demo's busy environment in the placeholder's place, as an operator puts their own."""
    assert EXAMPLE_ENV in expr
    (sample,) = query(stack["api"], expr.replace(EXAMPLE_ENV, BUSY))
    assert float(sample["value"][1]) >= 0
