"""deploy/kubernetes, rendered by `kubectl kustomize`: valid core kinds, the custom kinds' shapes,
rules and dashboards equal to rules/ and grafana/, a config the exporter accepts, and an example
overlay that renders before any key exists. The base itself is the Helm chart rendered
(scripts/kubernetes.py; tests/test_helm.py holds the chart)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from tools import require

from exporter.config.load import parse_config

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES_VERSION = "1.30.0"  # the oldest release still widely run that has every field used


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """The repository's deploy/ and grafana/ in a temporary copy: no key anywhere."""
    root = tmp_path_factory.mktemp("repo")
    for part in ("deploy", "grafana"):
        shutil.copytree(ROOT / part, root / part, symlinks=True)
    return root


def render(path: Path) -> list[dict[str, Any]]:
    kubectl = require("kubectl")
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module", params=["base", "overlays/example"])
def rendered(request, checkout) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(checkout / "deploy/kubernetes" / request.param)


def one(
    docs: list[dict[str, Any]], kind: str, name_prefix: str = "anthropic-work-exporter"
) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name_prefix)]
    assert len(found) == 1, [d["metadata"]["name"] for d in found]
    return found[0]


def test_every_core_object_is_valid_against_the_kubernetes_schema(rendered):
    _, docs = rendered
    core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
    assert sorted(d["kind"] for d in core) == [
        "ConfigMap",
        "ConfigMap",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
        "StatefulSet",
    ]
    for doc in core:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_pods_run_as_shards_unprivileged_with_probes_and_requests(rendered):
    _, docs = rendered
    statefulset = one(docs, "StatefulSet")
    pod = statefulset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "--shard.index=auto" in container["args"] and "--shard.total=$(SHARD_TOTAL)" in container["args"]
    assert container["env"] == [{"name": "SHARD_TOTAL", "value": str(statefulset["spec"]["replicas"])}]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
    assert [p["name"] for p in container["ports"]] == ["http"]
    service = one(docs, "Service")
    assert (
        service["spec"]["clusterIP"] == "None"
        and statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    )
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_volumes_are_the_generated_config_and_secrets_where_the_config_reads_them(rendered, tmp_path):
    _, docs = rendered
    pod = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    # The Secrets are made as a second step, by the names the README gives (kubectl create secret).
    assert secrets == {
        "api-key": "anthropic-work-exporter-api-key",
        "environment-keys": "anthropic-work-exporter-environment-keys",
    }
    assert _volume(pod, "config") in names
    config_map = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == _volume(pod, "config")
    )
    (config_file,) = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--config.file=")]
    assert config_file == f"{mounts['config']}/config.yaml"
    # The config as the pod would read it, with the Secrets' files where they are mounted.
    text = config_map["data"]["config.yaml"]
    (tmp_path / "api-key").write_text("test-organisation-key\n")
    (tmp_path / "keys").mkdir()
    text = text.replace(f"{mounts['api-key']}/api-key", str(tmp_path / "api-key"))
    text = text.replace(mounts["environment-keys"], str(tmp_path / "keys"))
    config = parse_config(text, {})
    assert config.discovery is not None and config.scrape.mode == "background"


def _volume(pod: dict[str, Any], name: str) -> str:
    (volume,) = [v for v in pod["volumes"] if v["name"] == name]
    return volume["configMap"]["name"]


def test_the_example_overlay_renders_with_no_key_present_in_its_namespace(checkout):
    overlay = checkout / "deploy/kubernetes/overlays/example"
    assert not list(overlay.rglob("*key*"))  # nothing to make before looking
    docs = render(overlay)
    assert [d for d in docs if d["kind"] == "Secret"] == []
    assert {d["metadata"].get("namespace") for d in docs} == {"monitoring"}
    assert one(docs, "StatefulSet")["spec"]["replicas"] == 3


def test_the_prometheus_rule_is_rules_dir_and_the_generator_agrees():
    require("helm")  # the base is the chart rendered
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts/kubernetes.py"), "--check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr


def test_the_custom_kinds(rendered):
    _, docs = rendered
    rule = one(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert (
        rule["spec"]["groups"]
        == yaml.safe_load((ROOT / "rules/anthropic-work.rules.yml").read_text())["groups"]
    )
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (
        endpoint["port"] in {p["name"] for p in service["spec"]["ports"]} and endpoint["path"] == "/metrics"
    )
    assert _seconds(endpoint["scrapeTimeout"]) <= _seconds(endpoint["interval"])


def _seconds(duration: str) -> int:
    assert duration.endswith("s") and duration[:-1].isdigit(), duration
    return int(duration[:-1])


def test_the_dashboards_config_map_is_grafana_dir_for_the_sidecar(rendered):
    _, docs = rendered
    dashboards = one(docs, "ConfigMap", "anthropic-work-dashboards")
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = {p.name: p.read_text() for p in (ROOT / "grafana/dashboards").glob("*.json")}
    assert dashboards["data"] == files
    assert all(json.loads(text)["uid"] for text in dashboards["data"].values())
