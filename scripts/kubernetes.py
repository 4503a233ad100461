"""Make deploy/kubernetes/base/prometheusrule.yaml from rules/anthropic-work.rules.yml.

    python scripts/kubernetes.py            # write it
    python scripts/kubernetes.py --check    # exit 1 if it is not what the rules make

Kustomize cannot turn a Prometheus rule file into a PrometheusRule's spec, so this
does; tests/test_kubernetes.py runs the check, so the two never drift apart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules" / "anthropic-work.rules.yml"
TARGET = ROOT / "deploy" / "kubernetes" / "base" / "prometheusrule.yaml"


class _Dumper(yaml.SafeDumper):
    pass


def _string(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None  # multi-line expressions stay readable
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _string)


def prometheus_rule(rules_text: str) -> str:
    groups: list[dict[str, Any]] = yaml.safe_load(rules_text)["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "anthropic-work-exporter"},
        "spec": {"groups": groups},
    }
    header = (
        f"# Made by scripts/kubernetes.py from {RULES.relative_to(ROOT)}: change the rules there,\n"
        "# then run the script again.\n"
    )
    return header + yaml.dump(rule, Dumper=_Dumper, sort_keys=False, width=10_000, allow_unicode=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    args = p.parse_args()
    made = prometheus_rule(RULES.read_text())
    if not args.check:
        TARGET.write_text(made)
    elif not TARGET.exists() or TARGET.read_text() != made:
        target, rules = TARGET.relative_to(ROOT), RULES.relative_to(ROOT)
        sys.exit(f"{target} is not what {rules} makes: run scripts/kubernetes.py")


if __name__ == "__main__":
    main()
