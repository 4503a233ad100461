"""The Helm chart, with the real tools: `helm lint --strict`, `helm template` with the default values and
with every value set, every core object valid for Kubernetes 1.30, a config the exporter accepts, the
rules of rules/ exactly, and thresholds that reach the rules and still pass `promtool test rules`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from tools import require

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "anthropic-work-exporter"
FULL = CHART / "ci" / "full-values.yaml"
KUBERNETES_VERSION = "1.30.0"


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("helm"), *args], capture_output=True, text=True, check=False)


def template(*args: str) -> list[dict[str, Any]]:
    out = helm("template", "anthropic-work-exporter", str(CHART), *args)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, [d["metadata"]["name"] for d in found]
    return found[0]


@pytest.fixture(scope="module", params=["default", "full"])
def rendered(request) -> tuple[str, list[dict[str, Any]]]:
    return request.param, template(*(["--values", str(FULL)] if request.param == "full" else []))


@pytest.mark.parametrize("values", [[], ["--values", str(FULL)]], ids=["default", "full"])
def test_helm_lint_strict(values):
    out = helm("lint", "--strict", str(CHART), *values)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


def test_every_core_object_is_valid_for_kubernetes(rendered):
    name, docs = rendered
    core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
    kinds = sorted(d["kind"] for d in core)
    expected = [
        "ConfigMap",
        "ConfigMap",
        "PodDisruptionBudget",
        "Secret",
        "Secret",
        "Service",
        "ServiceAccount",
    ]
    assert kinds == sorted([*expected, "StatefulSet", *(["NetworkPolicy"] if name == "full" else [])])
    for doc in core:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_replicas_is_the_one_place_the_shard_count_is_set(rendered):
    name, docs = rendered
    statefulset = one(docs, "StatefulSet")
    replicas = 4 if name == "full" else 2
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert statefulset["spec"]["replicas"] == replicas
    assert container["env"][0] == {"name": "SHARD_TOTAL", "value": str(replicas)}
    assert "--shard.total=$(SHARD_TOTAL)" in container["args"] and "--shard.index=auto" in container["args"]


def test_the_rendered_config_passes_check_config(rendered, tmp_path):
    _, docs = rendered
    statefulset = one(docs, "StatefulSet")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    text = one(docs, "ConfigMap", "-config")["data"]["config.yaml"]
    # The Secrets' files where the pod would have them.
    (tmp_path / "api-key").mkdir()
    (tmp_path / "api-key" / "api-key").write_text("sk-test-organisation-key\n")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "env_011CZkZ9X2dpNyB7HsEFoRfW").write_text("sk-test-environment-key\n")
    text = text.replace(mounts["api-key"], str(tmp_path / "api-key"))
    text = text.replace(mounts["environment-keys"], str(tmp_path / "keys"))
    (tmp_path / "config.yaml").write_text(text)
    check = subprocess.run(
        [sys.executable, "-m", "exporter", "--check-config", "--config.file", str(tmp_path / "config.yaml")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert f"--config.file={mounts['config']}/config.yaml" in container["args"]


def test_with_default_values_the_rule_is_exactly_the_rules_of_the_repository():
    rule = one(template(), "PrometheusRule")
    assert (
        rule["spec"]["groups"]
        == yaml.safe_load((ROOT / "rules/anthropic-work.rules.yml").read_text())["groups"]
    )
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts/kubernetes.py"), "--check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr


def test_a_threshold_set_in_values_is_in_the_rule_and_the_rule_tests_still_pass(tmp_path):
    promtool = require("promtool")
    docs = template(
        "--set", "prometheusRule.thresholds.queueBacklog=70", "--set", "prometheusRule.for.staleHeartbeat=2m"
    )
    groups = one(docs, "PrometheusRule")["spec"]["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    backlog = alerts["AnthropicWorkQueueBacklog"]
    assert backlog["expr"] == 'anthropic_work_items{state="queued"} > 70'
    assert "more than 70 queued work items for 10m" in backlog["annotations"]["description"]
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "anthropic-work.rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "rules" / "tests").mkdir()
    tests = (ROOT / "rules/tests/anthropic-work.test.yml").read_text()
    (tmp_path / "rules" / "tests" / "anthropic-work.test.yml").write_text(
        tests.replace("more than 50 queued", "more than 70 queued")
    )
    out = subprocess.run(
        [promtool, "test", "rules", "rules/tests/anthropic-work.test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("prometheusRule.thresholds.queueBacklogg=3", "Additional property queueBacklogg is not allowed"),
        (
            "prometheusRule.for.staleHeartbeat=soon",
            "prometheusRule.for.staleHeartbeat: Does not match pattern",
        ),
        ("replicas=0", "replicas: Must be greater than or equal to 1"),
        ("serviceMonitr.enabled=false", "Additional property serviceMonitr is not allowed"),
        ("image.pullPolicy=Sometimes", "image.pullPolicy"),
    ],
)
def test_a_typo_in_values_fails_at_install_naming_the_value(setting, complaint):
    out = helm("template", "x", str(CHART), "--set", setting)
    assert out.returncode != 0 and complaint in out.stderr, out.stderr


def test_the_dashboards_and_the_secrets(rendered):
    name, docs = rendered
    dashboards = one(docs, "ConfigMap", "-dashboards")
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = {p.name: p.read_text() for p in (ROOT / "grafana/dashboards").glob("*.json")}
    if name == "default":  # with thresholds of its own, test_the_dashboards_colour_at_the_alerts_thresholds
        assert dashboards["data"] == files
    keys = one(docs, "Secret", "-environment-keys")
    assert set(keys.get("data", {})) == ({"env_011CZkZ9X2dpNyB7HsEFoRfW"} if name == "full" else set())
    pod = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
    existing = {"work-exporter-web"} if name == "full" else set()  # webConfig.existingSecret
    assert set(secrets.values()) == names | existing


def test_the_dashboards_colour_at_the_alerts_thresholds_and_the_config_has_them(tmp_path):
    """prometheusRule.thresholds reach the alerts, the dashboards' colour steps, lines, bucket and
    words, and the exporter's config (for its pages): one source. Nothing else of a dashboard changes."""
    values = tmp_path / "values.yaml"
    values.write_text(
        "prometheusRule:\n  thresholds: {queueBacklog: 70, queueWaitTooLong: 600, staleHeartbeat: 120.5}\n"
        "config:\n  buckets:\n    heartbeat_age_seconds: [30, 90, 120.5, 300]\n"
    )
    docs = template("--values", str(values))
    data = one(docs, "ConfigMap", "-dashboards")["data"]
    shown = _panels(json.loads(data["anthropic-work-overview.json"]))
    files = {p.name: p.read_text() for p in (ROOT / "grafana/dashboards").glob("*.json")}
    stock = _panels(json.loads(files["anthropic-work-overview.json"]))

    def steps(title: str) -> list[tuple[str, float | None]]:
        return [
            (s["color"], s["value"]) for s in shown[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        ]

    assert steps("Queued") == [("green", None), ("orange", 35), ("red", 70)]
    assert steps("Oldest queued wait") == [("green", None), ("orange", 300), ("red", 600)]
    assert steps("Oldest heartbeat and queue wait") == [("green", None), ("red", 120.5)]
    assert 'le="120.5"' in shown["Stale heartbeats"]["targets"][0]["expr"]
    assert "older than 120.5 s" in shown["Stale heartbeats"]["description"]
    assert "The dashed line is 120.5 s" in shown["Oldest heartbeat and queue wait"]["description"]
    changed = {"Queued", "Oldest queued wait", "Oldest heartbeat and queue wait", "Stale heartbeats"}
    assert {t for t in stock if stock[t] != shown[t]} == changed
    assert data["anthropic-work-exporter-health.json"] == files["anthropic-work-exporter-health.json"]
    config = yaml.safe_load(one(docs, "ConfigMap", "-config")["data"]["config.yaml"])
    assert config["thresholds"] == {
        "queue_backlog": 70,
        "queue_wait_too_long": 600,
        "queue_wait_slo": 0.05,
        "stale_heartbeat": 120.5,
        "starting_without_heartbeat": 90,
        "stuck_stopping": 600,
    }


def _panels(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["title"]: p for p in dashboard["panels"]}


def test_thresholds_set_in_the_config_are_refused_naming_the_value_to_set():
    out = helm("template", "x", str(CHART), "--set", "config.thresholds.queue_backlog=3")
    assert out.returncode != 0
    assert "config.thresholds: set them in prometheusRule.thresholds" in out.stderr


def _full() -> dict[str, Any]:
    """The objects the full values render, by kind (the ConfigMaps by their name's end)."""
    docs = template("--values", str(FULL))
    pod = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return {
        "docs": docs,
        "pod": pod,
        "container": container,
        "service": one(docs, "Service"),
        "monitor": one(docs, "ServiceMonitor")["spec"]["endpoints"][0],
        "policy": one(docs, "NetworkPolicy")["spec"],
        "rule": one(docs, "PrometheusRule")["spec"]["groups"],
    }


FULL_VALUES = yaml.safe_load(FULL.read_text())


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        (
            "extraEnv",
            lambda r: r["container"]["env"][1:] == FULL_VALUES["extraEnv"],
        ),
        (
            "extraVolumes",
            lambda r: FULL_VALUES["extraVolumes"][0] in r["pod"]["volumes"],
        ),
        (
            "extraVolumeMounts",
            lambda r: FULL_VALUES["extraVolumeMounts"][0] in r["container"]["volumeMounts"],
        ),
        (
            "fullnameOverride",  # every name but the ServiceAccount's, which serviceAccount.name sets
            lambda r: all(
                d["metadata"]["name"].startswith("work-exporter-full")
                for d in r["docs"]
                if d["kind"] != "ServiceAccount"
            ),
        ),
        (
            "nameOverride",
            lambda r: (
                r["pod"]["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"][
                    "app.kubernetes.io/name"
                ]
                == "work-exporter"
                and r["service"]["spec"]["selector"]["app.kubernetes.io/name"] == "work-exporter"
            ),
        ),
        (
            "externalURL",
            lambda r: (
                "--web.external-url=https://work-exporter.example.com" in r["container"]["args"]
                and _annotation(r["rule"], "AnthropicWorkQueueBacklog", "debug_page")
                == "https://work-exporter.example.com/probe?environment_id={{ $labels.environment_id }}"
                "&debug=true"
            ),
        ),
        (
            "prometheusRule.runbookURL",
            lambda r: (
                _annotation(r["rule"], "AnthropicWorkQueueBacklog", "runbook_url")
                == "https://docs.example.com/anthropic-work-exporter/runbooks.html#anthropicworkqueuebacklog"
            ),
        ),
        (
            "webConfig",
            lambda r: (
                "--web.config.file=/etc/anthropic-work-exporter/web/web.yml" in r["container"]["args"]
                and {"name": "web-config", "secret": {"secretName": "work-exporter-web", "optional": False}}
                in r["pod"]["volumes"]
                and r["container"]["livenessProbe"]["exec"]["command"]
                == ["python", "-m", "exporter.healthcheck"]
                and r["container"]["readinessProbe"]["exec"]["command"]
                == ["python", "-m", "exporter.healthcheck"]
                and r["monitor"]["scheme"] == "https"
            ),
        ),
        (
            "service.annotations",
            lambda r: r["service"]["metadata"]["annotations"] == {"example.com/team": "platform"},
        ),
        (
            "serviceMonitor.relabelings",
            lambda r: (
                r["monitor"]["relabelings"] == FULL_VALUES["serviceMonitor"]["relabelings"]
                and r["monitor"]["metricRelabelings"] == FULL_VALUES["serviceMonitor"]["metricRelabelings"]
            ),
        ),
        (
            "serviceMonitor.basicAuth",
            lambda r: (
                r["monitor"]["basicAuth"] == FULL_VALUES["serviceMonitor"]["basicAuth"]
                and r["monitor"]["tlsConfig"] == FULL_VALUES["serviceMonitor"]["tlsConfig"]
            ),
        ),
        (
            "networkPolicy.egressPorts",
            lambda r: (
                r["policy"]["egress"][1]
                == {
                    "ports": [{"port": 3128, "protocol": "TCP"}],
                    "to": [{"ipBlock": {"cidr": "10.20.30.40/32"}}],
                }
            ),
        ),
        (
            "prometheusRule job matcher",  # a full name without anthropic-work: the chart's own job
            lambda r: (
                _expr(r["rule"], "AnthropicWorkExporterDown") == 'up{job=~"work-exporter-full"} == 0'
                and _expr(r["rule"], "AnthropicWorkExporterAbsent")
                == 'absent(up{job=~"work-exporter-full"} == 1)'
            ),
        ),
    ],
)
def test_each_value_renders_where_it_should(value, rendered):
    assert rendered(_full()), value


def test_with_defaults_the_probes_are_http_and_the_scrape_plain():
    docs = template()
    (container,) = one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
    assert not any(a.startswith(("--web.config.file", "--web.external-url")) for a in container["args"])
    endpoint = one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "http" and "basicAuth" not in endpoint and "tlsConfig" not in endpoint
    policy = one(template("--set", "networkPolicy.enabled=true"), "NetworkPolicy")["spec"]
    assert policy["egress"][1] == {"ports": [{"port": 443}]}


def _alert(groups: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [r for g in groups for r in g["rules"] if r.get("alert") == name]
    return found


def _annotation(groups: list[dict[str, Any]], alert: str, key: str) -> str:
    return str(_alert(groups, alert)["annotations"][key])


def _expr(groups: list[dict[str, Any]], alert: str) -> str:
    return str(_alert(groups, alert)["expr"])


def test_existing_secrets_are_used_and_none_is_made():
    docs = template(
        "--set", "apiKey.existingSecret=org-key", "--set", "environmentKeys.existingSecret=env-keys"
    )
    assert [d for d in docs if d["kind"] == "Secret"] == []
    pod = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    assert {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v} == {"org-key", "env-keys"}


def flattened(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Every value's path, maps that are data (config, resources, labels, ...) as one."""
    whole = {
        "config",
        "podSecurityContext",
        "securityContext",
        "resources",
        "affinity",
        "environmentKeys.values",
    }
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if (
            isinstance(value, dict)
            and value
            and path not in whole
            and not path.endswith(("labels", "annotations"))
        ):
            out += flattened(value, f"{path}.")
        else:
            out.append(path)
    return out


def test_the_chart_readme_lists_every_value():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    listed = set(re.findall(r"^\| `([^`]+)`", readme, re.M))
    listed |= {
        name.strip("` ") for row in re.findall(r"^\| (`[^|]+)\|", readme, re.M) for name in row.split(",")
    }
    missing = [path for path in flattened(values) if path not in listed]
    assert missing == []


def test_the_kustomize_example_takes_the_shard_count_from_its_one_replicas(tmp_path):
    kubectl = require("kubectl")
    for part in ("deploy", "grafana"):
        shutil.copytree(ROOT / part, tmp_path / part, symlinks=True)
    overlay = tmp_path / "deploy/kubernetes/overlays/example"
    text = (overlay / "kustomization.yaml").read_text()
    (overlay / "kustomization.yaml").write_text(text.replace("count: 3", "count: 5"))
    out = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    statefulset = one([d for d in yaml.safe_load_all(out.stdout) if d], "StatefulSet")
    assert statefulset["spec"]["replicas"] == 5
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert container["env"] == [{"name": "SHARD_TOTAL", "value": "5"}]


def readme_block(language: str, containing: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", (CHART / "README.md").read_text(), re.S)
    (block,) = [b for b in blocks if containing in b]
    return block


def test_the_readme_realistic_install_renders_pods_whose_config_passes_check_config(tmp_path):
    """The chart README's first example exactly (3 shards, existing Secrets, two environments
    by id plus discovery): its one-liner says OK, the Secrets it names are used and must exist,
    and with the Secrets' files where the pods have them the full check (keys read) passes."""
    require("yq")
    values = tmp_path / "my-values.yaml"
    values.write_text(readme_block("yaml", "existingSecret"))
    docs = template("--values", str(values))
    statefulset = one(docs, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 3
    pod = statefulset["spec"]["template"]["spec"]
    secrets = {v["secret"]["secretName"]: v["secret"]["optional"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {
        "anthropic-work-exporter-api-key": False,
        "anthropic-work-exporter-environment-keys": False,
    }
    assert [d for d in docs if d["kind"] == "Secret"] == []

    # The one-liner, as the README writes it.
    command = readme_block("sh", "--check-config").replace("my-values.yaml", str(values))
    tools = {Path(require(name)).parent for name in ("helm", "yq")} | {Path(sys.executable).parent}
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": ":".join(map(str, tools)) + ":/usr/bin:/bin"},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == (
        "<stdin>: OK: 2 environment(s) configured, discovery on, "
        "keys in /etc/anthropic-work-exporter/environment-keys, one shard, scrape mode background"
    )

    # With the Secrets' files where the pods have them: keys read, each environment's from its file.
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (tmp_path / "api-key").mkdir()
    (tmp_path / "api-key" / "api-key").write_text("sk-test-organisation-key\n")
    (tmp_path / "keys").mkdir()
    for env_id in ("env_011CZkZ9X2dpNyB7HsEFoRfW", "env_01StagingSandboxes000000"):
        (tmp_path / "keys" / env_id).write_text(f"sk-test-key-of-{env_id}\n")
    text = one(docs, "ConfigMap", "-config")["data"]["config.yaml"]
    text = text.replace(mounts["api-key"], str(tmp_path / "api-key"))
    text = text.replace(mounts["environment-keys"], str(tmp_path / "keys"))
    (tmp_path / "config.yaml").write_text(text)
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "--check-config",
            "--config.file",
            str(tmp_path / "config.yaml"),
            "--shard.total",
            "3",
            "--shard.index",
            "0",
        ],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert "2 environment(s) configured, discovery on" in check.stdout
    assert "queue_backlog: 200" in text


def test_no_helm_command_warns_and_the_chart_holds_no_link():
    assert [p for p in CHART.rglob("*") if p.is_symlink()] == []
    for command in (["lint", "--strict", str(CHART)], ["template", "x", str(CHART)]):
        out = helm(*command)
        assert out.returncode == 0 and "symbolic link" not in out.stderr, out.stderr


def _schema_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for key, sub in schema.get("properties", {}).items():
        out.add(f"{prefix}{key}")
        out |= _schema_paths(sub, f"{prefix}{key}.")
    return out


def test_every_value_is_in_the_schema():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert [path for path in flattened(values) if path not in _schema_paths(schema)] == []
