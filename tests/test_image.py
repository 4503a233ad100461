"""The container image, run with podman: `scripts/test-image.sh` builds it and runs these.

Without TEST_IMAGE (the image to run) they skip: the build needs root and podman.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from exposition import samples, value
from processes import free_port, simulator_process, wait_for

IMAGE = os.environ.get("TEST_IMAGE", "")
pytestmark = pytest.mark.skipif(not IMAGE, reason="scripts/test-image.sh builds the image and runs these")


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=120)


@contextlib.contextmanager
def container(*args: str, run: tuple[str, ...] = ()) -> Iterator[str]:
    """`podman run -d [run options] IMAGE [args]`; yields its name, removes it after."""
    name = f"awe-test-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, *run, IMAGE, *args)
    try:
        yield name
    except BaseException:
        logs = podman("logs", name, check=False)
        print(f"podman logs {name}:\n{logs.stdout}{logs.stderr}")  # pytest shows it with the failure
        raise
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


def answers(url: str) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(url, timeout=2).status_code == 200
    return False


def demo_listed(body: str) -> bool:
    success = [v for (n, _), v in samples(body).items() if n == "anthropic_work_scrape_success"]
    return len(success) == 3 and all(v == 1 for v in success)


def healthy(name: str) -> bool:
    return podman("healthcheck", "run", name, check=False).returncode == 0


def test_demo_serves_metrics_as_a_user_that_is_not_root_and_the_healthcheck_follows_it():
    port = free_port()
    with container("--demo", run=("-p", f"127.0.0.1:{port}:9723")) as name:
        wait_for("the demo", lambda: answers(f"http://127.0.0.1:{port}/-/ready"), timeout=30)
        wait_for(
            "the demo's environments listed",
            lambda: demo_listed(httpx.get(f"http://127.0.0.1:{port}/metrics").text),
            timeout=30,
        )
        # The runbooks page is package data: the image must have installed it.
        runbooks = httpx.get(f"http://127.0.0.1:{port}/docs/runbooks")
        assert runbooks.status_code == 200 and 'id="anthropicworkstaleheartbeat"' in runbooks.text
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        assert podman("exec", name, "id", "-g").stdout.strip() != "0"
        assert healthy(name)
        # From outside: inside its namespace, PID 1 ignores signals it has no handler for.
        podman("kill", "--signal", "STOP", name)  # it stops serving, the container stays
        assert not healthy(name)
        podman("kill", "--signal", "CONT", name)
        wait_for("healthy again", lambda: healthy(name), timeout=30)


def test_a_mounted_config_with_keys_from_an_environment_variable_and_a_file(tmp_path):
    with simulator_process("--static", "3", "5") as sim:
        (env_a, key_a), (env_b, key_b) = sim["environments"].items()
        (tmp_path / "env_b.key").write_text(key_b + "\n")
        config = {
            "api": {"base_url": sim["url"]},
            "environments": [
                {"id": env_a, "credentials": {"type": "environment_key", "value_env": "KEY_A"}},
                {"id": env_b, "credentials": {"type": "environment_key", "value_file": "/keys/env_b"}},
            ],
        }
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        for path in tmp_path.iterdir():
            path.chmod(0o644)  # readable by the image's user, as a Kubernetes Secret's files are
        port = free_port()
        run = (
            "--network=host",  # the simulator is on the host's loopback
            "-e",
            "KEY_A",
            "-v",
            f"{tmp_path / 'config.yaml'}:/etc/anthropic-work-exporter/config.yaml:ro",
            "-v",
            f"{tmp_path / 'env_b.key'}:/keys/env_b:ro",
        )
        os.environ["KEY_A"] = key_a
        try:
            with container(f"--web.listen-address=127.0.0.1:{port}", run=run) as name:
                base = f"http://127.0.0.1:{port}"
                wait_for("the exporter", lambda: answers(f"{base}/-/ready"), timeout=30)
                got = samples(httpx.get(f"{base}/metrics").text)
                assert healthy(name)  # on 127.0.0.1 and another port: it follows the flags
                logs = podman("logs", name).stdout + podman("logs", name).stderr
        finally:
            del os.environ["KEY_A"]
        truth = {
            e: httpx.get(f"{sim['url']}/_sim/truth", params={"environment_id": e}).json()["items"]
            for e in (env_a, env_b)
        }
    for env_id in (env_a, env_b):
        assert value(got, "anthropic_work_scrape_success", environment_id=env_id) == 1
        assert {
            state: value(got, "anthropic_work_items", environment_id=env_id, state=state)
            for state in truth[env_id]
        } == truth[env_id]
    assert key_a not in logs and key_b not in logs


def test_a_code_change_reuses_the_dependencies_layer():
    log = Path(os.environ["TEST_IMAGE_REBUILD_LOG"]).read_text()
    steps = re.split(r"^(?:\[\d+/\d+\] )?STEP \d+/\d+: ", log, flags=re.M)[1:]
    install = [s for s in steps if "--target /deps" in s]
    code = [s for s in steps if s.startswith("COPY exporter ")]
    assert len(install) == 1 and "Using cache" in install[0], install
    assert len(code) == 1 and "Using cache" not in code[0], code


def test_no_layer_holds_wheels_or_build_tools():
    history = podman("history", "--no-trunc", "--format", "{{.CreatedBy}}", IMAGE).stdout
    assert "/wheels" not in history and "rm -rf" not in history
    listing = podman(
        "run", "--rm", "--entrypoint", "sh", IMAGE, "-c", "ls /opt/anthropic-work-exporter"
    ).stdout
    assert "exporter" in listing.split() and not any(n.endswith(".whl") for n in listing.split())
