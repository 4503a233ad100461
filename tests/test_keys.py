"""Keys that rotate on disk are used from the next listing on, with no reload: a `value_file`, and the
discovery keys directory (a mounted Kubernetes Secret, updated in place by the kubelet). What a key
file must be, that no key read ever blocks, and that the redactor holds the keys in use only."""

from __future__ import annotations

import concurrent.futures
import os
import socket
import time
from pathlib import Path

import httpx
import pytest
from conftest import FakeClock
from exposition import samples, value
from processes import wait_for
from upstream import running_exporter, running_simulator, static_env

from exporter.config.keys import KeyProblem, read_key_file
from exporter.config.load import parse_config
from exporter.config.schema import Config
from exporter.config.yamldoc import ConfigError
from exporter.redact import RETIRED_KEY_SECONDS, Redactor
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


@pytest.mark.parametrize(
    ("defaults", "key_file", "expected"),
    [
        ("", "right", 1),  # no default credentials: the key file is the key
        ("  credentials: {type: environment_key, value_env: WRONG}\n", "right", 1),  # before the defaults
        ("  credentials: {type: environment_key, value_env: RIGHT}\n", None, 1),  # none: the defaults
        ("", None, 0),  # neither: no_credentials, and the exporter starts
    ],
    ids=["file-only", "file-before-defaults", "defaults-without-file", "neither"],
)
def test_a_configured_environment_without_credentials_takes_its_key_from_the_keys_directory(
    tmp_path, defaults, key_file, expected
):
    env = static_env("env_c", 2, NOW)
    keys = tmp_path / "keys"
    keys.mkdir()
    if key_file is not None:
        (keys / "env_c").write_text(env.key + "\n")
    with running_simulator(env) as (_sim, url):
        config = parse_config(
            f"api:\n  base_url: '{url}'\n  max_retries: 0\n  environment_keys_dir: {keys}\n{defaults}"
            "environments:\n  - id: env_c\n",
            {"WRONG": "sk-the-wrong-key-0123456789", "RIGHT": env.key},
        )
        with running_exporter(config) as exporter:
            body = httpx.get(f"http://{exporter.address}/metrics", timeout=30).text
            if not expected:
                (keys / "env_c").write_text(env.key)  # the Secret updated: used with no restart
                wait_for("the key file used", lambda: success(exporter.address, "env_c") == 1, 30)
    assert value(samples(body), "anthropic_work_scrape_success", environment_id="env_c") == expected


def test_two_different_keys_directories_are_a_config_error():
    with pytest.raises(ConfigError) as err:
        parse_config(
            "api: {environment_keys_dir: /tmp}\n"
            "discovery:\n  credentials: {type: api_key, value_env: API}\n  environment_keys_dir: /\n",
            {"API": API_KEY},
        )
    assert err.value.problems == [
        "config.yaml:4: discovery.environment_keys_dir: differs from api.environment_keys_dir (/tmp): one "
        "directory holds every environment's key file; set api.environment_keys_dir only"
    ]


# -- what a key file must be, and what it never does ------------------------------------------


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def unix_socket(path: Path) -> Path:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))  # the file stays after close
    sock.close()
    return path


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: fifo(p), "is not a regular file"),
        (lambda p: unix_socket(p), "is not a regular file"),
        (lambda p: (p.mkdir(), p)[1], "is not a regular file"),
        (lambda p: Path("/dev/null"), "is not a regular file"),
        (lambda p: (p.write_text("e"), p)[1], "holds 1 characters, fewer than a key's 16"),
        (lambda p: (p.write_text("sk-ant-"), p)[1], "holds 7 characters, fewer than a key's 16"),
        (
            lambda p: (p.write_bytes(b"\xef\xbb\xbfsk-ant-0123456789abc"), p)[1],
            "starts with a byte-order mark",
        ),
        (lambda p: (p.write_text("sk-ant 0123456789abc"), p)[1], "must be printable ASCII with no spaces"),
        (lambda p: (p.write_text("sk-ant-\t0123456789abc"), p)[1], "must be printable ASCII with no spaces"),
        (lambda p: (p.write_text("  \n"), p)[1], "is empty"),
        (lambda p: p, "No such file or directory"),
    ],
    ids=[
        "fifo",
        "socket",
        "directory",
        "device",
        "one byte",
        "a prefix",
        "bom",
        "space",
        "tab",
        "blank",
        "missing",
    ],
)
def test_only_a_regular_file_that_looks_like_a_key_is_read_and_nothing_blocks(tmp_path, make, problem):
    path = make(tmp_path / "key")
    # A FIFO with no writer would block the open for good: read where a hang cannot hold the test.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        done, _ = concurrent.futures.wait([pool.submit(read_key_file, path)], timeout=30)
        if not done:  # blocked: unblock it by writing the FIFO, and fail
            with open(path, "w") as writer:
                writer.write("x")
            pytest.fail(f"reading {path} blocked")
    with pytest.raises(KeyProblem, match=problem) as refused:
        done.pop().result()
    assert "0123456789abc" not in str(refused.value)  # the problem, never the key


def test_a_key_is_read_without_its_surrounding_whitespace(tmp_path):
    (tmp_path / "key").write_text("  sk-ant-0123456789abcdef\n")
    assert read_key_file(tmp_path / "key") == "sk-ant-0123456789abcdef"


def test_a_fifo_as_value_file_is_a_config_error_at_once(tmp_path):
    fifo(tmp_path / "key")
    text = "environments:\n  - id: env_a\n    credentials: {type: environment_key, value_file: key}\n"
    with pytest.raises(ConfigError) as refused:
        parse_config(text, {}, base_dir=tmp_path)
    assert refused.value.problems == [
        f"config.yaml:3: environments[0].credentials.value_file: {tmp_path / 'key'} is not a regular file "
        "(a FIFO, socket, device or directory): not a key"
    ]


def keyed_config(url: str, files: dict[str, Path]) -> Config:
    listed = "".join(
        f"  - id: {env_id}\n    credentials: {{type: environment_key, value_file: {path}}}\n"
        for env_id, path in files.items()
    )
    return parse_config(f"api: {{base_url: '{url}', max_retries: 0}}\nenvironments:\n{listed}", {})


def reasons(address: str, env_id: str) -> dict[str, float]:
    body = httpx.get(f"http://{address}/metrics", timeout=30).text
    return {
        dict(labels)["reason"]: v
        for (name, labels), v in samples(body).items()
        if name == "anthropic_work_listing_failures_total"
        and dict(labels)["environment_id"] == env_id
        and dict(labels)["source"] == "work"
    }


def test_a_key_file_caught_half_written_is_no_key_and_never_scrubbed_from_the_log(tmp_path, log_stream):
    """env_a's key file is caught as the single byte `e`: env_a reports no_credentials with the reason
    until the file holds its key again. env_b, failing after that, logs its error with every `e`."""
    a, b = static_env("env_a", 3, NOW), static_env("env_b", 2, NOW)
    key_a, key_b = tmp_path / "a", tmp_path / "b"
    key_a.write_text(a.key)
    key_b.write_text(b.key)
    with (
        running_simulator(a, b) as (_sim, url),
        running_exporter(keyed_config(url, {"env_a": key_a, "env_b": key_b})) as exporter,
    ):
        assert (success(exporter.address, "env_a"), success(exporter.address, "env_b")) == (1, 1)
        key_a.write_text("e")
        wait_for("env_a without a key", lambda: "no_credentials" in reasons(exporter.address, "env_a"), 30)
        assert success(exporter.address, "env_a") == 0
        key_b.write_text("sk-a-revoked-key-for-env-b")  # env_b now fails: its error passes the redactor
        wait_for("env_b refused", lambda: "http_401" in reasons(exporter.address, "env_b"), 30)
        key_a.write_text(a.key + "\n")
        wait_for("env_a's key back", lambda: success(exporter.address, "env_a") == 1, 30)
    log = log_stream.getvalue()
    refused = [line for line in log.splitlines() if "holds no usable key" in line]
    assert len(refused) == 1 and "used_by=env_a" in refused[0] and "holds 1 characters" in refused[0]
    (failed,) = [
        line for line in log.splitlines() if "environment_id=env_b" in line and "listing work failed" in line
    ]
    assert 'error="HTTP 401 authentication_error: invalid authentication credentials' in failed
    assert "[REDACTED]" not in log  # "e" never became a key to scrub
    assert a.key not in log and b.key not in log


def test_a_fifo_in_place_of_a_key_file_never_blocks_a_reload_or_the_watcher(tmp_path, log_stream):
    """env_a's key file becomes a FIFO: POST /-/reload answers at once (refused, naming the file), the
    watcher goes on (env_b's rotated key is used within seconds), and env_a's key written later is too."""
    a, b = static_env("env_a", 3, NOW), static_env("env_b", 2, NOW)
    key_a, key_b = tmp_path / "a", tmp_path / "b"
    key_a.write_text(a.key)
    key_b.write_text("sk-the-old-revoked-key-0123456789")
    with running_simulator(a, b) as (_sim, url):
        config = keyed_config(url, {"env_a": key_a, "env_b": key_b})
        with running_exporter(
            config, load=lambda: (keyed_config(url, {"env_a": key_a, "env_b": key_b}), None)
        ) as exporter:
            key_a.unlink()
            fifo(key_a)
            reload = httpx.post(f"http://{exporter.address}/-/reload", timeout=20)  # a blocked read: 30 s
            key_b.write_text(b.key)
            wait_for("env_b's rotated key in use", lambda: success(exporter.address, "env_b") == 1, 30)
            wait_for(
                "env_a without a key", lambda: "no_credentials" in reasons(exporter.address, "env_a"), 30
            )
            key_a.unlink()
            key_a.write_text(a.key)
            wait_for("env_a's key back", lambda: success(exporter.address, "env_a") == 1, 30)
    assert reload.status_code == 500
    assert f"{key_a} is not a regular file" in reload.text
    assert a.key not in log_stream.getvalue() and b.key not in log_stream.getvalue()


# -- the redactor holds the keys in use, and only those -----------------------------------------


def test_a_key_let_go_of_is_scrubbed_for_a_grace_and_then_forgotten():
    clock = FakeClock()
    redactor = Redactor(clock=clock)
    redactor.hold("generation 1", ["sk-old-key-0123456789", "sk-shared-0123456789"])
    redactor.hold("generation 2", ["sk-shared-0123456789"])
    redactor.hold("generation 1", ["sk-new-key-0123456789"])  # rotated
    text = "sent sk-old-key-0123456789 and sk-shared-0123456789 and sk-new-key-0123456789"
    assert redactor.redact(text) == "sent [REDACTED] and [REDACTED] and [REDACTED]"
    assert redactor.keys() == 3
    clock.now += RETIRED_KEY_SECONDS + 1  # a request sent with the old key has long ended
    assert redactor.redact(text) == "sent sk-old-key-0123456789 and [REDACTED] and [REDACTED]"
    redactor.hold("generation 1", [])
    redactor.hold("generation 2", [])
    clock.now += RETIRED_KEY_SECONDS + 1
    assert redactor.keys() == 0 and redactor.redact(text) == text
