"""The command line, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from exporter.cli import parse_listen_address


def run(*args: str, env: dict[str, str] | None = None, cwd=None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd,
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
        f"{tmp_path / 'c.yaml'}: OK, 2 environment(s)\n"
        "  env_a (env_a): api_key from env ANTHROPIC_API_KEY\n"
        "  env_b (env_b): api_key from env ANTHROPIC_API_KEY\n"
    )
    assert "sk-ant-never-printed" not in result.stdout + result.stderr


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


@pytest.mark.parametrize("value", ["9723", "host:", "host:port", ":70000"])
def test_bad_listen_addresses(value):
    with pytest.raises(ValueError, match=r"--web\.listen-address"):
        parse_listen_address(value)
