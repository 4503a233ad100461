"""The bundled Grafana dashboards: structure a stock Grafana needs, and the project's rules for them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parent.parent
DASHBOARDS = {
    p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
}
CORE_PANELS = {"row", "stat", "timeseries", "heatmap", "state-timeline", "table"}
GAUGE_HISTOGRAMS = ("anthropic_work_heartbeat_age_seconds", "anthropic_work_state_age_seconds")


def panels(dashboard: dict) -> list[dict]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]


def test_both_dashboards_exist_with_stable_uids():
    assert {d["uid"] for d in DASHBOARDS.values()} == {"anthropic-work-overview", "anthropic-work-exporter"}
    assert {d["title"] for d in DASHBOARDS.values()} == {
        "Anthropic work: overview",
        "Anthropic work: exporter health",
    }


@pytest.mark.parametrize("name", DASHBOARDS)
def test_template_variables(name):
    variables = {v["name"]: v for v in DASHBOARDS[name]["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "environment_id"]
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    for var in ("job", "environment_id"):
        v = variables[var]
        assert v["type"] == "query" and v["multi"] and v["includeAll"]
        assert v["datasource"]["uid"] == "${datasource}"
    assert variables["environment_id"]["definition"] == (
        'label_values(anthropic_work_scrape_success{job=~"$job"}, environment_id)'
    )


@pytest.mark.parametrize("name", DASHBOARDS)
def test_panels_use_the_datasource_variable_core_types_units_and_descriptions(name):
    ids = [p["id"] for p in panels(DASHBOARDS[name])]
    assert len(ids) == len(set(ids))
    for p in panels(DASHBOARDS[name]):
        assert p["type"] in CORE_PANELS, p["type"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["description"].strip(), p["title"]
        assert p["fieldConfig"]["defaults"].get("unit"), p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            assert "$job" in t["expr"], t["expr"]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_no_rate_over_gauge_histograms(name):
    for expr in exprs(DASHBOARDS[name]):
        for fn in re.findall(r"\b(rate|irate|increase|delta|deriv)\(([^()]*)", expr):
            assert not any(h in fn[1] for h in GAUGE_HISTOGRAMS), expr


def test_the_dashboards_link_to_each_other():
    for d in DASHBOARDS.values():
        assert "anthropic-work" in d["tags"]
        assert any(
            link["type"] == "dashboards" and link["tags"] == ["anthropic-work"] and link["includeVars"]
            for link in d["links"]
        )


def test_the_overview_has_what_operators_look_at():
    overview = next(d for d in DASHBOARDS.values() if d["uid"] == "anthropic-work-overview")
    row = overview["panels"][0]
    assert (row["type"], row["repeat"]) == ("row", "environment_id")
    titles = [p["title"] for p in panels(overview)]
    for title in (
        "Queued",
        "Active",
        "Stale heartbeats",
        "Oldest queued wait",
        "Scrape health",
        "Work items per state",
        "Time in state: p50, p90, p99",
        "Heartbeat age of active work",
        "Oldest heartbeat and queue wait",
        "Items without a heartbeat",
        "Workers polling",
        "Workers polling and queue depth",
        "Throughput: transitions per minute",
        "Queue wait: p50, p95, p99",
        "Run duration: p50, p95, p99",
        "Items by metadata",
    ):
        assert title in titles
    joined = " ".join(exprs(overview))
    # Percentiles of what happened come from the real histograms, over rates.
    assert "rate(anthropic_work_queue_wait_seconds_bucket" in joined
    assert "rate(anthropic_work_run_duration_seconds_bucket" in joined
    assert "rate(anthropic_work_transitions_total" in joined
    heatmap = next(p for p in panels(overview) if p["type"] == "heatmap")
    assert heatmap["targets"][0]["format"] == "heatmap" and heatmap["options"]["calculate"] is False


def test_the_exporter_health_dashboard_covers_scrapes_and_upstream_codes():
    health = next(d for d in DASHBOARDS.values() if d["uid"] == "anthropic-work-exporter")
    joined = " ".join(exprs(health))
    for needle in (
        "anthropic_work_scrape_success",
        "anthropic_work_scrape_duration_seconds",
        "sum by (code) (rate(anthropic_work_api_requests_total",
        'code="429"',
    ):
        assert needle in joined


def test_provisioning_files_load_the_dashboards_and_a_prometheus_datasource():
    provisioning = ROOT / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    assert datasources["apiVersion"] == 1
    assert datasources["datasources"][0]["type"] == "prometheus"
    providers = yaml.safe_load((provisioning / "dashboards" / "anthropic-work.yaml").read_text())
    assert providers["apiVersion"] == 1
    assert providers["providers"][0]["type"] == "file"
    assert providers["providers"][0]["options"]["path"]
