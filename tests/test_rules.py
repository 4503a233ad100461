"""The bundled alert and recording rules: promtool clean, unit-tested, documented."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from tools import require

from exporter.web.debug import ANCHORS

ROOT = Path(__file__).parent.parent
RULES = ROOT / "rules" / "anthropic-work.rules.yml"
RULE_TESTS = ROOT / "rules" / "tests" / "anthropic-work.test.yml"
RUNBOOKS = (ROOT / "docs" / "runbooks.md").read_text()
DEBUG_ANCHORS = {*ANCHORS.values(), "summary", "log", "metrics", "settings"}  # the debug page's sections


def alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def recordings() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "record" in r]


def test_promtool_check_rules_is_clean():
    result = subprocess.run(
        [require("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts()) + len(recordings())} rules found" in result.stdout


def test_promtool_rule_unit_tests_pass():
    result = subprocess.run(
        [require("promtool"), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_case_and_every_recording_rule_a_case():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [c for t in tests for c in t.get("alert_rule_test", [])]
    for alert in alerts():
        mine = [c for c in cases if c["alertname"] == alert["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{alert['alert']} never fires in a test"
        assert any(not c["exp_alerts"] for c in mine), f"{alert['alert']} is never tested quiet"
    exprs = " ".join(c["expr"] for t in tests for c in t.get("promql_expr_test", []))
    for rule in recordings():
        assert rule["record"] in exprs, f"{rule['record']} has no test"


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: a["alert"])
def test_each_alert_is_labelled_annotated_and_has_a_runbook(alert):
    assert alert["labels"]["severity"] in ("critical", "warning")
    annotations = alert["annotations"]
    if not alert["alert"].startswith("AnthropicWorkExporter"):  # about the exporter, not an environment
        assert set(annotations) == {"summary", "description", "runbook_url", "debug_page"}
        assert "{{ $labels.environment_id }}" in annotations["summary"]
        assert "{{ $labels.environment_id }}" in annotations["description"]
        # The environment's debug page, the runbooks' first stop.
        assert annotations["debug_page"] == "/probe?environment_id={{ $labels.environment_id }}&debug=true"
    else:
        assert set(annotations) == {"summary", "description", "runbook_url"}
    anchor = annotations["runbook_url"].split("#", 1)[1]
    assert annotations["runbook_url"] == f"docs/runbooks.md#{anchor}"
    assert f"\n## {alert['alert']}\n" in RUNBOOKS and anchor == alert["alert"].lower()
    section = RUNBOOKS.split(f"\n## {alert['alert']}\n", 1)[1].split("\n## ", 1)[0]
    # What it means, why, what the operator can check and what the data cannot show, what to do.
    for part in ("**Means.**", "**Likely causes.**", "**Check.**", "**Cannot see.**", "**Fix.**"):
        assert part in section
    # No step needs what the API does not give: it names no worker (docs/runbooks.md).
    assert not re.search(r"(logs? of the worker that|the worker that took)", section), alert["alert"]
    for anchor in re.findall(r"`#([a-z-]+)`", section):  # the debug page's sections
        assert anchor in DEBUG_ANCHORS, anchor
    assert re.search(rf"\| \[{alert['alert']}\]", RUNBOOKS), "missing from the thresholds table"


def test_every_bucket_a_bundled_rule_or_dashboard_reads_by_its_bound_is_one_the_config_requires():
    """A rule reading `le="300.0"` of a histogram whose bounds the operator may change is empty
    when 300 is left out: the config refuses such buckets, naming the rule. Both ways: every
    bound read is required, and every required bound is read."""
    from dataclasses import fields

    from exporter.config.schema import BucketConfig

    texts = [RULES.read_text(), *(p.read_text() for p in (ROOT / "grafana/dashboards").glob("*.json"))]
    read = {
        (family, float(bound))
        for text in texts
        for family, bound in re.findall(r'anthropic_work_(\w+)_bucket\{[^}]*le=\\?"([0-9.]+)\\?"', text)
    }
    required = {(f.name, bound) for f in fields(BucketConfig) for bound, _ in f.metadata.get("needed", ())}
    assert read == required == {("heartbeat_age_seconds", 90.0), ("queue_wait_seconds", 300.0)}
    for f in fields(BucketConfig):
        for bound, readers in f.metadata.get("needed", ()):
            named = re.findall(r"(?:rule|alert) (\S+)", readers)
            assert named and all(name in RULES.read_text() for name in named), readers
            assert bound in getattr(BucketConfig(), f.name)
