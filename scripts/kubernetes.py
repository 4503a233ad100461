"""Make the Kubernetes manifests from their one source each, or check that they are current.

    python scripts/kubernetes.py            # write them
    python scripts/kubernetes.py --check    # exit 1, saying which, if one is not what it makes

- `deploy/helm/anthropic-work-exporter/templates/prometheusrule.yaml`: the chart's
  PrometheusRule, made from `rules/anthropic-work.rules.yml` with each alert's threshold and
  `for` replaced by its value (`prometheusRule.thresholds.<name>`, `prometheusRule.for.<name>`).
  Rendered with the chart's default values it is the rules file's groups exactly.
- `deploy/helm/anthropic-work-exporter/templates/dashboards.yaml`: the chart's dashboards
  ConfigMap, made from `grafana/dashboards/*.json` with the colour steps and lines that show an
  alert's threshold replaced by `prometheusRule.thresholds.<name>` (`DASHBOARD_THRESHOLDS`), so the
  dashboards turn red where the alerts fire. With the default values it is those files exactly.
- `deploy/kubernetes/base/rendered.yaml`: the kustomize base's objects, rendered from the chart
  by `helm template` with `deploy/kubernetes/base/values.yaml`. One set of manifests: the chart.

`tests/test_kubernetes.py` runs the check, so none of them can drift from its source.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules" / "anthropic-work.rules.yml"
CHART = ROOT / "deploy" / "helm" / "anthropic-work-exporter"
RULE_TEMPLATE = CHART / "templates" / "prometheusrule.yaml"
DASHBOARDS = ROOT / "grafana" / "dashboards"
DASHBOARD_TEMPLATE = CHART / "templates" / "dashboards.yaml"
BASE = ROOT / "deploy" / "kubernetes" / "base"
BASE_VALUES = BASE / "values.yaml"
RENDERED = BASE / "rendered.yaml"

# Each alert's name in values (the alert's name without AnthropicWork, in lowerCamelCase), and for
# those with a threshold, the literal of it in `expr`, and each phrase of its annotations that says
# the threshold or the duration (written here as the rules file has it with the default values).
THRESHOLDS: dict[str, tuple[str, list[str]]] = {
    "AnthropicWorkQueueBacklog": ("> 50", ["more than 50 queued"]),
    "AnthropicWorkQueueWaitTooLong": ("> 300", ["above 300 s"]),
    "AnthropicWorkQueueWaitSLO": ("> 0.05", ["above 0.05 had"]),
    "AnthropicWorkStaleHeartbeat": ("> 90", ["more than 90 s ago"]),
    "AnthropicWorkStartingWithoutHeartbeat": ("> 90", ["more than 90 s ago"]),
    "AnthropicWorkStuckStopping": ("> 600", ["more than 600 s ago"]),
}


# Where a dashboard shows an alert's threshold: (file, panel title) -> what follows which value.
# ("step", colour, name): the colour step starts at the threshold; ("half", colour, name): at half
# of it (the warning before the alert); ("le", name): the bucket bound a query reads (a histogram
# bound, so the config must have it: the exporter's --check-config says so); ("text", "90 s",
# name): a phrase of the description. Checked: each is found exactly where said.
THRESHOLD = "{{{{ .Values.prometheusRule.thresholds.{name} }}}}"
DASHBOARD_THRESHOLDS: dict[tuple[str, str], list[tuple[str, ...]]] = {
    ("anthropic-work-overview.json", "Queued"): [
        ("half", "orange", "queueBacklog"),
        ("step", "red", "queueBacklog"),
    ],
    ("anthropic-work-overview.json", "Oldest queued wait"): [
        ("half", "orange", "queueWaitTooLong"),
        ("step", "red", "queueWaitTooLong"),
    ],
    ("anthropic-work-overview.json", "Stale heartbeats"): [
        ("le", "staleHeartbeat"),
        ("text", "older than 90 s", "staleHeartbeat"),
    ],
    ("anthropic-work-overview.json", "Oldest heartbeat and queue wait"): [
        ("step", "red", "staleHeartbeat"),
        ("text", "The dashed line is 90 s", "staleHeartbeat"),
    ],
}


class Holes:
    """Placeholders for Helm expressions: put into a document where a value goes, before it is
    dumped (a dumper would quote or escape the expression), and filled in the dumped text."""

    def __init__(self) -> None:
        self.expressions: dict[str, str] = {}  # placeholder -> Helm expression

    def __call__(self, expression: str) -> str:
        key = f"@@{len(self.expressions)}@@"
        self.expressions[key] = expression
        return key

    def fill(self, text: str, unquote: bool = False) -> str:
        """`text` with each placeholder replaced; `unquote`: with the quotes around a whole one too."""
        for key, expression in self.expressions.items():
            if unquote:
                text = text.replace(f'"{key}"', expression)
            text = text.replace(key, expression)
        return text


def dashboard_template() -> str:
    """The chart's dashboards ConfigMap template, from grafana/dashboards."""
    hole = Holes()
    entries = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        text = path.read_text()
        dashboard = json.loads(text)
        dumped = json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"
        assert dumped == text, f"{path.name}: not as json.dumps(indent=2) writes it"
        for (file, title), edits in DASHBOARD_THRESHOLDS.items():
            if file != path.name:
                continue
            (panel,) = [p for p in dashboard["panels"] if p["title"] == title]
            steps = {s["color"]: s for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]}
            for edit in edits:
                value = THRESHOLD.format(name=edit[-1])
                if edit[0] in ("step", "half"):
                    half = f"{{{{ divf .Values.prometheusRule.thresholds.{edit[-1]} 2 }}}}"
                    expression = value if edit[0] == "step" else half
                    steps[edit[1]]["value"] = hole(expression)
                elif edit[0] == "le":
                    (target,) = [t for t in panel["targets"] if "le=" in t["expr"]]
                    bound = re.search(r'le="([^"]+)"', target["expr"])
                    assert bound is not None, title
                    le = f'{{{{ include "awe.le" .Values.prometheusRule.thresholds.{edit[1]} }}}}'
                    target["expr"] = target["expr"].replace(bound.group(0), f'le="{hole(le)}"')
                else:
                    phrase = edit[1]
                    assert panel["description"].count(phrase) == 1, (title, phrase)
                    number = re.search(r"\d+", phrase)
                    assert number is not None
                    said = phrase.replace(number.group(0), hole(value))
                    panel["description"] = panel["description"].replace(phrase, said)
        body = json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"
        body = _helm_literal(body)
        body = hole.fill(body, unquote=True)  # a JSON number's placeholder was a string
        lines = "".join(f"    {line}" for line in body.splitlines(keepends=True))
        entries.append(f"  {path.name}: |\n{lines}")
    return (
        f"# Made by scripts/kubernetes.py from {DASHBOARDS.relative_to(ROOT)}, with each threshold from\n"
        "# values: change the dashboards there and run the script; change a threshold in values.\n"
        "{{- if .Values.dashboards.enabled }}\n"
        "# For Grafana's dashboard sidecar, which loads every ConfigMap with its label.\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        '  name: {{ include "awe.fullname" . }}-dashboards\n'
        "  labels:\n"
        '    {{- include "awe.labels" . | nindent 4 }}\n'
        "    {{- with .Values.dashboards.labels }}\n"
        "    {{- toYaml . | nindent 4 }}\n"
        "    {{- end }}\n"
        "  {{- with .Values.dashboards.annotations }}\n"
        "  annotations:\n"
        "    {{- toYaml . | nindent 4 }}\n"
        "  {{- end }}\n"
        "data:\n" + "".join(entries) + "{{- end }}\n"
    )


def value_name(alert: str) -> str:
    name = alert.removeprefix("AnthropicWork")
    return name[0].lower() + name[1:]


class _Dumper(yaml.SafeDumper):
    pass


def _string(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None  # multi-line expressions stay readable
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _string)


def _helm_literal(text: str) -> str:
    """Prometheus's own `{{ ... }}` templates, made to pass through Helm's untouched."""
    return re.sub(r"\{\{(.*?)\}\}", lambda m: '{{ "{{" }}' + m.group(1) + '{{ "}}" }}', text)


def rule_template(rules_text: str) -> str:
    """The chart's PrometheusRule template, from the rules file."""
    groups: list[dict[str, Any]] = yaml.safe_load(rules_text)["groups"]
    hole = Holes()

    for group in groups:
        for rule in group["rules"]:
            alert = rule.get("alert")
            if alert is None:
                continue
            name = value_name(alert)
            duration = rule["for"]
            rule["for"] = hole(f"{{{{ .Values.prometheusRule.for.{name} }}}}")
            for key in ("summary", "description"):
                text = rule["annotations"][key]
                for word in ("for", "For"):
                    said = f"{word} " + hole(f"{{{{ .Values.prometheusRule.for.{name} }}}}")
                    text = text.replace(f"{word} {duration}", said)
                rule["annotations"][key] = text
            # The exporter's own job: the rules file matches any job named *anthropic-work*; the chart
            # matches its own Service's name when that lacks it (fullnameOverride).
            rule["expr"] = rule["expr"].replace(
                'job=~".*anthropic-work.*"', 'job=~"' + hole('{{ include "awe.jobMatcher" . }}') + '"'
            )
            annotations = rule["annotations"]
            # Links: absolute under externalURL, the runbooks wherever runbookURL says (_helpers.tpl).
            page, anchor = annotations["runbook_url"].split("#")
            assert page == "docs/runbooks.md", alert
            annotations["runbook_url"] = hole('{{ include "awe.runbookURL" . }}') + f"#{anchor}"
            if "debug_page" in annotations:
                assert annotations["debug_page"].startswith("/probe?"), alert
                external = hole('{{ include "awe.externalURL" . }}')
                annotations["debug_page"] = external + annotations["debug_page"]
            if alert in THRESHOLDS:
                literal, phrases = THRESHOLDS[alert]
                number = literal.split()[1]
                assert rule["expr"].count(literal) == 1, (alert, literal)
                value = f"{{{{ .Values.prometheusRule.thresholds.{name} }}}}"
                rule["expr"] = rule["expr"].replace(literal, f"{literal.split()[0]} " + hole(value))
                for key in ("summary", "description"):
                    for phrase in phrases:
                        text = rule["annotations"][key]
                        if phrase in text:
                            said = phrase.replace(number, hole(value))
                            rule["annotations"][key] = text.replace(phrase, said)
                assert phrases[0] not in rule["annotations"]["description"], (alert, phrases)
    body = yaml.dump({"groups": groups}, Dumper=_Dumper, sort_keys=False, width=10_000, allow_unicode=True)
    body = _helm_literal(body)
    body = hole.fill(body)
    indented = "".join(f"  {line}" if line.strip() else line for line in body.splitlines(keepends=True))
    return (
        f"# Made by scripts/kubernetes.py from {RULES.relative_to(ROOT)}, with each threshold and duration\n"
        "# from values: change the rules there and run the script; change a threshold in values.\n"
        "{{- if .Values.prometheusRule.enabled }}\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        '  name: {{ include "awe.fullname" . }}\n'
        "  labels:\n"
        '    {{- include "awe.labels" . | nindent 4 }}\n'
        "    {{- with .Values.prometheusRule.labels }}\n"
        "    {{- toYaml . | nindent 4 }}\n"
        "    {{- end }}\n"
        "spec:\n"
        f"{indented}"
        "{{- end }}\n"
    )


def helm() -> str:
    found = shutil.which("helm")
    if found is None:
        sys.exit("helm is not installed: ./scripts/test.sh installs it (see docs/development.md)")
    return found


def rendered_base() -> str:
    """The kustomize base's objects, as the chart renders them with the base's values."""
    out = subprocess.run(
        [helm(), "template", "anthropic-work-exporter", str(CHART), "--values", str(BASE_VALUES)],
        capture_output=True,
        text=True,
        check=True,
    )
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    for doc in docs:  # what only Helm manages, and the chart's version, do not belong in a base
        labels = doc["metadata"].get("labels", {})
        for key in ("app.kubernetes.io/managed-by", "helm.sh/chart", "app.kubernetes.io/instance"):
            labels.pop(key, None)
        for selector in _selectors(doc):
            selector.pop("app.kubernetes.io/instance", None)
    header = (
        f"# Made by scripts/kubernetes.py: `helm template` of {CHART.relative_to(ROOT)} with\n"
        f"# {BASE_VALUES.relative_to(ROOT)}. Do not edit: change the chart or the values, run the script.\n"
    )
    return header + "---\n".join(
        yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=10_000, allow_unicode=True) for doc in docs
    )


def _selectors(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every label map that selects the pods, so that the base's selectors match its labels."""
    spec = doc.get("spec", {})
    found = []
    if doc["kind"] == "Service":
        found.append(spec.get("selector", {}))
    for path in (("selector", "matchLabels"), ("podSelector", "matchLabels")):
        node: Any = spec
        for key in path:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if node:
            found.append(node)
    template = spec.get("template", {})
    if template:
        found.append(template["metadata"]["labels"])
        for constraint in template["spec"].get("topologySpreadConstraints", []):
            found.append(constraint["labelSelector"]["matchLabels"])
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    args = p.parse_args()
    made = {RULE_TEMPLATE: rule_template(RULES.read_text()), DASHBOARD_TEMPLATE: dashboard_template()}
    if not args.check:  # the chart's templates first: the base is rendered from them
        for path in (RULE_TEMPLATE, DASHBOARD_TEMPLATE):
            path.write_text(made[path])
    made[RENDERED] = rendered_base()
    stale = [path for path, text in made.items() if not path.exists() or path.read_text() != text]
    if args.check and stale:
        names = ", ".join(str(path.relative_to(ROOT)) for path in stale)
        sys.exit(f"{names}: not what its source makes; run scripts/kubernetes.py")
    for path in stale:
        path.write_text(made[path])


if __name__ == "__main__":
    main()
