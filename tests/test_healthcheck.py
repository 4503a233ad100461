"""The image's HEALTHCHECK (`python -m exporter.healthcheck`) against real exporters on loopback."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
from processes import exporter_process

from exporter.healthcheck import exporter_arguments, main, probe

BCRYPT_PW = "$2y$04$5rdYXI91QPOFthQdfP4jSerUv2iCnvWhLd/KhtLAdmNXDUKCgnHaq"  # "pw", cost 4


@pytest.mark.parametrize(
    ("cmdline", "flags"),
    [
        (
            ["python", "-m", "exporter", "--web.listen-address=:9723", "--demo"],
            ["--web.listen-address=:9723", "--demo"],
        ),
        (["/usr/bin/catatonit", "--", "python3", "-m", "exporter", "--demo"], ["--demo"]),
        (["/opt/bin/anthropic-work-exporter", "--config.file=c.yaml"], ["--config.file=c.yaml"]),
        (["python", "-m", "exporter.simulator"], []),
        (["sleep", "exporter"], []),
    ],
)
def test_the_exporters_flags_are_found_on_its_command_line(cmdline, flags):
    assert exporter_arguments(cmdline) == flags


@pytest.mark.parametrize("web", ["", "basic_auth", "tls", "tls+basic_auth"])
def test_healthy_while_serving_and_unhealthy_once_stopped(web, pki):
    lines = []
    if "tls" in web:
        lines.append("tls_server_config: {cert_file: server.crt, key_file: server.key}")
    if "basic_auth" in web:
        lines.append(f"basic_auth_users: {{prom: '{BCRYPT_PW}'}}")
    (pki / "web.yml").write_text("\n".join(lines) + "\n")
    with exporter_process("--demo", "--web.config.file", "web.yml", cwd=pki, plain_http=not web) as (url, _):
        flags = [
            "--demo",
            "--web.listen-address",
            url.removeprefix("http://"),
            "--web.config.file",
            "web.yml",
        ]
        with contextlib.chdir(pki):  # the web config's paths are relative, as in the container
            assert probe(flags) is None
    with contextlib.chdir(pki):  # the web config's paths are relative, as in the container
        problem = probe(flags)
    scheme = "https" if "tls" in web else "http"
    assert problem is not None and problem.startswith(f"{scheme}://127.0.0.1:") and "Refused" in problem


def test_the_entry_point_exits_1_with_the_reason(tmp_path):
    (tmp_path / "cmdline").write_bytes(b"python\0-m\0exporter\0--web.listen-address=127.0.0.1:1\0")
    with pytest.raises(
        SystemExit, match=r"^unhealthy: http://127\.0\.0\.1:1/-/healthy: ConnectionRefusedError"
    ):
        main(str(tmp_path / "cmdline"))


def test_a_web_config_it_cannot_read_is_unhealthy_and_says_which(tmp_path):
    cmdline = f"python\0-m\0exporter\0--web.config.file={tmp_path / 'missing.yml'}\0"
    (tmp_path / "cmdline").write_text(cmdline)
    with pytest.raises(SystemExit, match=r"^unhealthy: .*missing\.yml: cannot read web config"):
        main(str(tmp_path / "cmdline"))


def test_the_health_check_loads_neither_the_exporter_nor_bcrypts_hashing(tmp_path):
    """It runs every few seconds: flags and the web config's reader only, and no password is hashed."""
    (tmp_path / "web.yml").write_text(f"basic_auth_users: {{prom: '{BCRYPT_PW}'}}\n")
    flags = ["--web.listen-address", "127.0.0.1:1", "--web.config.file", str(tmp_path / "web.yml")]
    heavy = ("httpx", "httpcore", "prometheus_client", "uvicorn", "msgspec", "exporter.cli", "exporter.app")
    code = (
        "import sys, bcrypt\n"
        "bcrypt.hashpw = bcrypt.checkpw = None  # any call would raise\n"
        "from exporter.healthcheck import probe\n"
        f"print(probe({flags!r}))\n"
        f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    problem, loaded = result.stdout.splitlines()
    assert "ConnectionRefusedError" in problem
    assert loaded == "[]"
