"""Keys that rotate on disk are used from the next listing on, with no reload: a `value_file`, and the
discovery keys directory (a mounted Kubernetes Secret, updated in place by the kubelet)."""

from __future__ import annotations

import time

import httpx
from exposition import samples, value
from processes import wait_for
from upstream import running_exporter, running_simulator, static_env

from exporter.config import parse_config
from exporter.simulator import API_KEY

NOW = time.time()


def success(address: str, env_id: str) -> float | None:
    body = httpx.get(f"http://{address}/metrics", timeout=30).text
    return value(samples(body), "anthropic_work_scrape_success", environment_id=env_id)


def test_a_rotated_value_file_is_used_from_the_next_listing_on(tmp_path, log_stream):
    env = static_env("env_a", 3, NOW)
    key_file = tmp_path / "key"
    key_file.write_text("sk-the-old-revoked-key-0123456789\n")
    with running_simulator(env) as (_sim, url):
        config = parse_config(
            f"api: {{base_url: '{url}', max_retries: 0}}\nenvironments:\n  - id: env_a\n"
            f"    credentials: {{type: environment_key, value_file: {key_file}}}\n",
            {},
        )
        with running_exporter(config) as exporter:
            before = success(exporter.address, "env_a")
            key_file.write_text(env.key + "\n")  # the Secret's new value, as a mounted file changes
            wait_for("the new key in use", lambda: success(exporter.address, "env_a") == 1, 30)
    assert before == 0
    log = log_stream.getvalue()
    changed = [line for line in log.splitlines() if 'msg="key changed"' in line]
    assert len(changed) == 1 and "used_by=env_a" in changed[0] and str(key_file) in changed[0]
    assert env.key not in log and "sk-the-old-revoked-key-0123456789" not in log


def test_a_rotated_key_in_the_keys_directory_is_used_and_logged_by_environment(tmp_path, log_stream):
    env = static_env("env_d", 2, NOW)
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "env_d").write_text("sk-the-old-revoked-key-0123456789")
    with running_simulator(env) as (_sim, url):
        config = parse_config(
            f"api: {{base_url: '{url}', max_retries: 0}}\n"
            "discovery:\n  credentials: {type: api_key, value_env: API}\n"
            f"  environment_keys_dir: {keys}\n",
            {"API": API_KEY},
        )
        with running_exporter(config) as exporter:
            wait_for("env_d discovered", lambda: success(exporter.address, "env_d") is not None, 30)
            before = success(exporter.address, "env_d")
            (keys / "env_d").write_text(env.key)
            wait_for("the new key in use", lambda: success(exporter.address, "env_d") == 1, 30)
    assert before == 0
    log = log_stream.getvalue()
    changed = [line for line in log.splitlines() if 'msg="environment key changed"' in line]
    assert len(changed) == 1 and "environment_id=env_d" in changed[0]
    assert env.key not in log
