"""The command line, run as a user runs it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest
import yaml
from exposition import samples, value
from processes import free_port, simulator_process, wait_for

from exporter.config.flags import parse_args, parse_listen_address
from exporter.web.server import ServerLimits


def run(
    *args: str, env: dict[str, str] | None = None, cwd=None, stdin: str | None = None
) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd,
        input=stdin,
        timeout=60,
        check=False,
    )


def test_check_config_prints_every_problem_and_exits_non_zero(tmp_path):
    (tmp_path / "config.yaml").write_text(
        textwrap.dedent("""\
        api:
          page_size: 0
        environments:
          - id: env_a
            credentials: {type: password, value_env: SECRET_KEY}
        """)
    )
    result = run("--check-config", cwd=tmp_path, env={"SECRET_KEY": "sk-do-not-print"})
    assert result.returncode == 1
    assert result.stderr == (
        "2 problem(s) in the configuration:\n"
        "  config.yaml:2: api.page_size: must be > 0, got 0\n"
        "  config.yaml:5: environments[0].credentials.type: must be environment_key or api_key\n"
    )
    assert "sk-do-not-print" not in result.stdout + result.stderr


def test_check_config_accepts_a_good_file_and_says_where_each_key_comes_from(tmp_path):
    (tmp_path / "c.yaml").write_text("environments: [{id: env_a}, {id: env_b}]\n")
    result = run(
        "--check-config",
        "--config.file",
        str(tmp_path / "c.yaml"),
        env={"ANTHROPIC_API_KEY": "sk-ant-never-printed"},
    )
    assert result.returncode == 0
    assert result.stdout == (
        f"{tmp_path / 'c.yaml'}: OK: 2 environment(s) configured, discovery off, one shard, "
        "scrape mode on_demand\n"
        "  env_a (env_a): api_key from env ANTHROPIC_API_KEY\n"
        "  env_b (env_b): api_key from env ANTHROPIC_API_KEY\n"
    )
    assert "sk-ant-never-printed" not in result.stdout + result.stderr


RENDERED = """\
api:
  environment_keys_dir: /etc/anthropic-work-exporter/environment-keys
environments:
  - id: env_a
    name: prod
  - id: env_b
    credentials: {type: api_key, value_file: /etc/anthropic-work-exporter/api-key/api-key}
discovery:
  credentials: {type: api_key, value_env: ANTHROPIC_API_KEY}
"""


def test_a_rendered_config_is_checked_from_standard_input_without_its_keys():
    """What `helm template ... | anthropic-work-exporter --check-config --check-config.skip-keys
    --config.file -` does: every key file and variable is somewhere else, nothing is read."""
    result = run(
        "--check-config",
        "--check-config.skip-keys",
        "--config.file",
        "-",
        "--shard.index",
        "2",
        "--shard.total",
        "3",
        stdin=RENDERED,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "<stdin>: OK: 2 environment(s) configured, discovery on, keys in "
        "/etc/anthropic-work-exporter/environment-keys, shard 2 of 3, scrape mode on_demand\n"
        "  env_a (prod): the key file /etc/anthropic-work-exporter/environment-keys/env_a if there, else "
        "environment_key from env ANTHROPIC_ENVIRONMENT_KEY or ANTHROPIC_API_KEY (not looked up)\n"
        "  env_b (env_b): api_key from file /etc/anthropic-work-exporter/api-key/api-key (not read)\n"
    )


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (
            ["--check-config"],
            "config.yaml:10: discovery.credentials.value_env: environment variable "
            "ANTHROPIC_API_KEY is not set or empty",
        ),
        (["--check-config", "--check-config.skip-keys"], None),
    ],
    ids=["keys-read", "keys-skipped"],
)
def test_skipping_keys_skips_the_keys_and_checks_everything_else(tmp_path, args, problem):
    (tmp_path / "config.yaml").write_text(RENDERED.replace("name: prod", "name: prod\n    bogus: 1"))
    result = run(*args, "--config.file", "config.yaml", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()[1:]
    expected = [
        "  config.yaml:6: environments[0].bogus: unknown key (allowed: credentials, id, name, "
        "stats_credentials, workspace_id)"
    ]
    if problem is not None:
        expected = [
            "  config.yaml:2: api.environment_keys_dir: /etc/anthropic-work-exporter/environment-keys is not "
            "a directory",
            *expected,
            "  config.yaml:8: environments[1].credentials.value_file: cannot read "
            "/etc/anthropic-work-exporter/api-key/api-key: No such file or directory",
            f"  {problem}",
        ]
    assert lines == expected


@pytest.mark.parametrize(
    "args",
    [["--config.file", "-"], ["--check-config.skip-keys"]],
    ids=["stdin-when-running", "skip-keys-when-running"],
)
def test_standard_input_and_skipped_keys_are_for_checking_only(args):
    result = run(*args, stdin="environments: [{id: env_a}]\n")
    assert result.returncode == 1 and "--check-config" in result.stderr


def test_a_missing_config_file_is_named(tmp_path):
    result = run("--config.file", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert f"{tmp_path / 'nope.yaml'}: cannot read config file: No such file or directory" in result.stderr


def test_check_config_also_checks_the_web_config(tmp_path):
    (tmp_path / "c.yaml").write_text("environments: [{id: env_a}]\n")
    (tmp_path / "web.yml").write_text("basic_auth_users: {prom: plain}\n")
    result = run(
        "--check-config",
        "--config.file",
        str(tmp_path / "c.yaml"),
        "--web.config.file",
        str(tmp_path / "web.yml"),
        env={"ANTHROPIC_API_KEY": "k"},
    )
    assert result.returncode == 1
    assert "basic_auth_users.prom: must be a bcrypt hash" in result.stderr


def test_version_and_help():
    assert run("--version").stdout.startswith("anthropic-work-exporter 0.1.0")
    help_text = run("--help").stdout
    for flag in (
        "--config.file",
        "--web.listen-address",
        "--web.config.file",
        "--log.level",
        "--log.format",
        "--demo",
        "--check-config",
    ):
        assert flag in help_text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (":9723", ("0.0.0.0", 9723)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:9723", ("[::1]", 9723)),
    ],
)
def test_listen_addresses(value, expected):
    assert parse_listen_address(value) == expected


@pytest.mark.parametrize(
    ("argv", "listen"),
    [
        ([], ":9723"),  # every interface
        (["--demo"], "127.0.0.1:9723"),  # a demo stays on the machine it runs on
        (["--demo", "--web.listen-address", ":8080"], ":8080"),
        (["--web.listen-address=:1", "--web.listen-address=127.0.0.1:2"], "127.0.0.1:2"),  # the last wins
    ],
)
def test_default_listen_address(argv, listen):
    assert parse_args(argv).listen == listen


@pytest.mark.parametrize("value", ["9723", "host:", "host:port", ":70000"])
def test_bad_listen_addresses(value):
    with pytest.raises(ValueError, match=r"--web\.listen-address"):
        parse_listen_address(value)


@pytest.mark.slow
def test_sigterm_lets_a_scrape_being_answered_finish_and_exits_despite_stuck_upstream(tmp_path):
    """One environment never answers. SIGTERM arrives while two scrapes wait on it: the one due
    within the grace period is answered, the other is cut at the grace, and the process exits 0."""
    with simulator_process("--static", "5", "5") as sim:
        stuck, healthy = list(sim["environments"])
        httpx.post(
            f"{sim['url']}/_sim/faults", params={"environment_id": stuck}, json={"latency_seconds": 600}
        ).raise_for_status()
        environments = [
            {"id": e, "credentials": {"type": "environment_key", "value_env": f"K{n}"}}
            for n, e in enumerate((stuck, healthy))
        ]
        (tmp_path / "config.yaml").write_text(
            yaml.safe_dump({"api": {"base_url": sim["url"]}, "environments": environments})
        )
        keys = {f"K{n}": sim["environments"][e] for n, e in enumerate((stuck, healthy))}
        command = [sys.executable, "-m", "exporter", "--web.listen-address", f"127.0.0.1:{free_port()}"]
        port = command[-1].rsplit(":", 1)[1]
        base = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
        process = subprocess.Popen(
            command, cwd=tmp_path, env={**base, **keys}, stderr=subprocess.PIPE, text=True
        )
        try:
            wait_for("the exporter", lambda: _answers(f"http://127.0.0.1:{port}/-/ready"))
            answers: dict[str, httpx.Response | Exception] = {}
            scrapes = [
                threading.Thread(target=_scrape, args=(f"http://127.0.0.1:{port}/metrics", timeout, answers))
                for timeout in ("3", "60")
            ]
            for scrape in scrapes:
                scrape.start()
            wait_for("both scrapes to wait on the stuck environment", lambda: _in_flight(sim["url"]) >= 2)
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
            exited_after = time.monotonic() - signalled
            for scrape in scrapes:
                scrape.join()
        finally:
            process.kill()
            process.wait()
    assert code == 0, process.stderr.read() if process.stderr else ""
    assert exited_after < ServerLimits().graceful_seconds + 3
    answered = answers["3"]
    assert isinstance(answered, httpx.Response) and answered.status_code == 200
    metrics = samples(answered.text)
    assert value(metrics, "anthropic_work_scrape_success", environment_id=stuck) == 0
    assert value(metrics, "anthropic_work_scrape_success", environment_id=healthy) == 1
    assert not isinstance(answers["60"], httpx.Response) or answers["60"].status_code != 200


def _answers(url: str) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(url, timeout=1).status_code == 200
    return False


def _in_flight(sim_url: str) -> int:
    return httpx.get(f"{sim_url}/_sim/stats").json()["in_flight"]


def _scrape(url: str, timeout: str, answers: dict) -> None:
    try:
        answers[timeout] = httpx.get(
            url, headers={"X-Prometheus-Scrape-Timeout-Seconds": timeout}, timeout=90
        )
    except httpx.HTTPError as exc:
        answers[timeout] = exc


@pytest.mark.parametrize(
    ("config", "web", "problem"),
    [
        ("api: {base_url: 'http://[::1'}\n", "", "config.yaml:1: api.base_url: not a URL"),
        ("", "tls_server_config: {cert_file: 123, key_file: k}\n", "tls_server_config.cert_file: must be"),
        ("", "tls_server_config: {cert_file: c, key_file: k, min_version: [TLS12]}\n", "min_version: must"),
        ("", "basic_auth_users: {u: '$2b$40$" + "x" * 53 + "'}\n", "a bcrypt cost must be from 4 to 31"),
        ("", "\xff\xfe not text\n", "web.yml: cannot read web config: not UTF-8 text"),
    ],
)
def test_check_config_names_the_key_and_never_prints_a_traceback(tmp_path, config, web, problem):
    (tmp_path / "config.yaml").write_text(config + "environments: [{id: env_a}]\n")
    (tmp_path / "web.yml").write_bytes(web.encode("latin-1"))
    result = run("--check-config", "--web.config.file", "web.yml", cwd=tmp_path)
    assert result.returncode == 1
    assert problem in result.stderr and "Traceback" not in result.stderr + result.stdout
