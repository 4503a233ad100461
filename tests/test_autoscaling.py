"""deploy/autoscaling: the KEDA ScaledObject's required fields, the HPA valid for Kubernetes 1.30 and
asking for what prometheus-adapter's rules serve. That every query returns data from a real
Prometheus scraping --demo is in tests/test_prometheus.py."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
AUTOSCALING = ROOT / "deploy" / "autoscaling"
KUBERNETES_VERSION = "1.30.0"


def load(name: str) -> dict:
    return yaml.safe_load((AUTOSCALING / name).read_text())


def test_the_scaled_object_has_what_keda_requires():
    scaled = load("keda-scaledobject.yaml")
    assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    assert scaled["metadata"]["name"]
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] and spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert [t["name"] for t in spec["triggers"]] == ["queue-depth", "oldest-wait"]
    for trigger in spec["triggers"]:
        assert trigger["type"] == "prometheus"
        metadata = trigger["metadata"]
        assert metadata["serverAddress"].startswith("http") and metadata["query"]
        # KEDA reads trigger metadata as strings: a bare number is refused.
        assert isinstance(metadata["threshold"], str) and float(metadata["threshold"]) > 0
    queries = " ".join(t["metadata"]["query"] for t in spec["triggers"])
    assert "anthropic_work_queue_depth" in queries and "anthropic_work_queue_oldest_age_seconds" in queries


def test_the_hpa_is_valid_and_asks_for_the_metrics_the_adapter_serves():
    hpa = load("hpa.yaml")
    kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)
    served = {rule["name"]["as"] for rule in load("prometheus-adapter-rules.yaml")["externalRules"]}
    asked = {m["external"]["metric"]["name"] for m in hpa["spec"]["metrics"]}
    assert asked == served == {"anthropic_work_queue_depth", "anthropic_work_queue_oldest_age_seconds"}
    scaled = load("keda-scaledobject.yaml")
    assert hpa["spec"]["scaleTargetRef"]["name"] == scaled["spec"]["scaleTargetRef"]["name"]


def test_the_adapter_rules_keep_the_environment_label_to_select_on():
    for rule in load("prometheus-adapter-rules.yaml")["externalRules"]:
        assert 'environment_id!=""' in rule["seriesQuery"]
        assert (
            "<<.Series>>{<<.LabelMatchers>>}" in rule["metricsQuery"]
            and "<<.GroupBy>>" in rule["metricsQuery"]
        )
