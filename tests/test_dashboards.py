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
    names = 'max by (environment_id, name) (anthropic_work_environment_info{job=~"$job"})'
    environment = variables["environment_id"]
    assert environment["definition"] == environment["query"]["query"] == f"query_result({names})"
    # The id is the value the queries filter on; the display name is what legends and row titles show.
    assert environment["regex"] == '/environment_id="(?<value>[^"]+)".*name="(?<text>[^"]+)"/'


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


# What Grafana draws when a panel sets nothing, read from Grafana's own source:
# public/app/plugins/panel/state-timeline/module.tsx sets the colour's defaultValue to
# FieldColorModeId.ContinuousGrYlRd (green for the lowest value, red for the highest: a
# failing 0 drawn green); stat, gauge and table colour by thresholds, whose default steps are
# green, then red from 80; timeseries uses the classic palette, one colour per series.
DEFAULT_COLOR_MODE = {"state-timeline": "continuous-GrYlRd", "stat": "thresholds", "table": "thresholds"}
DEFAULT_THRESHOLDS = [{"color": "green", "value": None}, {"color": "red", "value": 80}]
SUCCESS = re.compile(r"anthropic_work_\w*success\w*|anthropic_work_exporter_config_last_reload_successful")


def drawn_colour(panel: dict, value: float) -> str | None:
    """The colour Grafana gives `value` in `panel`: a value mapping first, then the colour mode."""
    defaults = panel["fieldConfig"]["defaults"]
    for mapping in defaults.get("mappings", []):
        if mapping["type"] == "value" and str(int(value)) in mapping["options"]:
            colour = mapping["options"][str(int(value))].get("color")
            if colour:
                return colour
    mode = defaults.get("color", {}).get("mode", DEFAULT_COLOR_MODE.get(panel["type"], "palette-classic"))
    if mode != "thresholds":
        return None  # a gradient or a palette: the colour does not say good or bad
    steps = defaults.get("thresholds", {}).get("steps", DEFAULT_THRESHOLDS)
    colour = steps[0]["color"]
    for step in steps[1:]:
        if value >= step["value"]:
            colour = step["color"]
    return colour


SUCCESS_PANELS = [
    (name, p)
    for name, d in DASHBOARDS.items()
    for p in panels(d)
    if p["type"] != "row" and any(SUCCESS.search(t["expr"]) for t in p["targets"])
]


@pytest.mark.parametrize(
    ("name", "panel"), SUCCESS_PANELS, ids=[f"{n}:{p['title']}" for n, p in SUCCESS_PANELS]
)
def test_a_success_panel_draws_0_red_and_1_green(name, panel):
    assert (drawn_colour(panel, 0), drawn_colour(panel, 1)) == ("red", "green"), panel["title"]


def test_the_colour_check_would_catch_grafanas_default():
    bare = {"type": "state-timeline", "fieldConfig": {"defaults": {"unit": "short"}}}
    assert (drawn_colour(bare, 0), drawn_colour(bare, 1)) == (None, None)
    assert len(SUCCESS_PANELS) >= 3  # scrape success twice, stats success


# Panels whose value is good or bad (staleness, backlog, waits): their colours are set, not left to
# Grafana: green for good, red past the alert's threshold.
GOOD_OR_BAD = (
    "Queued",
    "Workers polling",
    "Stale heartbeats",
    "Oldest queued wait",
    "Oldest heartbeat and queue wait",
    "Queue wait: p50, p95, p99",
)


@pytest.mark.parametrize("title", GOOD_OR_BAD)
def test_good_and_bad_panels_set_their_colours(title):
    overview = DASHBOARDS["anthropic-work-overview"]
    panel = next(p for p in panels(overview) if p["title"] == title)
    defaults = panel["fieldConfig"]["defaults"]
    assert "mode" in defaults["color"], title
    colours = [step["color"] for step in defaults["thresholds"]["steps"]]
    assert ("green" in colours and colours[-1] == "red") or colours == ["red", "green"], (title, colours)
    if panel["type"] == "timeseries":  # the bad region is marked on the graph
        assert defaults["custom"]["thresholdsStyle"]["mode"] != "off"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_legends_show_display_names_never_raw_ids(name):
    for p in panels(DASHBOARDS[name]):
        for t in p.get("targets", []):
            legend = t.get("legendFormat", "")
            assert "{{environment_id}}" not in legend, (p["title"], legend)
            if "{{name}}" in legend:
                assert "group_left (name)" in t["expr"] and "anthropic_work_environment_info" in t["expr"]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_units_say_what_descriptions_say(name):
    for p in panels(DASHBOARDS[name]):
        if p["type"] == "row":
            continue
        unit = p["fieldConfig"]["defaults"]["unit"]
        if unit == "percentunit":
            assert "%" in p["description"] or "share" in p["description"], p["title"]
        if unit == "s":
            assert "cores" not in p["description"], p["title"]
        if "cores" in p["description"]:
            assert unit not in ("percentunit", "percent"), p["title"]


def test_the_queue_wait_and_run_duration_panels_show_exemplars():
    overview = DASHBOARDS["anthropic-work-overview"]
    for title in ("Queue wait: p50, p95, p99", "Run duration: p50, p95, p99"):
        panel = next(p for p in panels(overview) if p["title"] == title)
        assert all(t["exemplar"] is True for t in panel["targets"]), title
