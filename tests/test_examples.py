"""The example Prometheus and Alertmanager configs: valid, and the /probe relabelling works for real."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from processes import exporter_process, free_port, running, wait_for
from tools import query, require
from upstream import DEMO_ENVS

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus-probe.yml"])
def test_prometheus_examples_pass_promtool(name):
    result = subprocess.run(
        [require("promtool"), "check", "config", str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rules = yaml.safe_load((EXAMPLES.parent / "rules" / "anthropic-work.rules.yml").read_text())
    count = sum(len(group["rules"]) for group in rules["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout  # the bundled rules, found through rule_files


def test_alertmanager_example_passes_amtool():
    result = subprocess.run(
        [require("amtool"), "check-config", str(EXAMPLES / "alertmanager.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_the_probe_example_gives_each_environment_its_own_target(tmp_path):
    prometheus = require("prometheus")
    config = yaml.safe_load((EXAMPLES / "prometheus-probe.yml").read_text())
    with exporter_process("--demo", cwd=tmp_path) as (exporter_url, _log):
        address = exporter_url.removeprefix("http://")
        probe, own = config["scrape_configs"]
        # The example as it is, pointed at this exporter and the demo's environments.
        probe["static_configs"] = [{"targets": list(DEMO_ENVS)}]
        probe["relabel_configs"][-1]["replacement"] = address
        own["static_configs"] = [{"targets": [address]}]
        for job in (probe, own):
            job["scrape_interval"], job["scrape_timeout"] = "2s", "2s"
        config = {"global": {"evaluation_interval": "2s"}, "scrape_configs": [probe, own]}
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        args = [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        with running(args, tmp_path / "prom.log", f"http://127.0.0.1:{port}/-/ready"):
            api = f"http://127.0.0.1:{port}/api/v1"
            up = wait_for(
                "every probe target up",
                lambda: r if len(r := query(api, 'up{job="anthropic-work-probe"} == 1')) == 3 else None,
                60,
            )
            assert sorted(s["metric"]["instance"] for s in up) == sorted(DEMO_ENVS)
            wait_for(
                "work metrics per probe target",
                lambda: (
                    len(query(api, 'anthropic_work_scrape_success{job="anthropic-work-probe"} == 1')) == 3
                ),
                60,
            )
            for series in query(api, 'anthropic_work_items{job="anthropic-work-probe", state="queued"}'):
                assert series["metric"]["instance"] == series["metric"]["environment_id"]
            # The exporter's own job keeps its process metrics and drops the work metrics.
            wait_for(
                "the exporter's own metrics",
                lambda: query(api, 'process_resident_memory_bytes{job="anthropic-work-exporter"}'),
                60,
            )
            assert query(api, 'anthropic_work_items{job="anthropic-work-exporter"}') == []
