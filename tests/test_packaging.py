"""The Dockerfile and the README, checked for what they promise."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from upstream import config_for, running_exporter, running_simulator, static_env

ROOT = Path(__file__).parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def healthcheck_command(port: int) -> list[str]:
    match = re.search(r"HEALTHCHECK .*?CMD (\[[^\n]*\])", DOCKERFILE, re.S)
    assert match, "Dockerfile has no HEALTHCHECK in exec form"
    command = json.loads(match.group(1))
    return [part.replace("127.0.0.1:9723", f"127.0.0.1:{port}") for part in command]


def test_the_image_healthcheck_passes_against_a_live_exporter_and_fails_without_one():
    env = static_env("env_a", 1, time.time())
    with running_simulator(env) as (_sim, url), running_exporter(config_for(url, env)) as exporter:
        port = int(exporter.address.rsplit(":", 1)[1])
        alive = subprocess.run(healthcheck_command(port), capture_output=True, check=False, timeout=30)
    dead = subprocess.run(healthcheck_command(port), capture_output=True, check=False, timeout=30)
    assert alive.returncode == 0, alive.stderr
    assert dead.returncode != 0


def test_the_image_runs_as_a_non_root_user_with_no_secrets_and_a_mounted_config():
    users = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert users and users[-1] not in ("root", "0")
    assert not re.search(r"^(ENV|ARG) .*(KEY|TOKEN|SECRET)", DOCKERFILE, re.M | re.I)
    assert "--config.file=/etc/anthropic-work-exporter/config.yaml" in DOCKERFILE
    assert "FROM python:3.12-slim" in DOCKERFILE


def test_ci_runs_the_test_command_the_readme_gives():
    readme = (ROOT / "README.md").read_text()
    assert "./scripts/test.sh" in readme
    assert "./scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
