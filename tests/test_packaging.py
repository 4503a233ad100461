"""The Dockerfile and the README, checked for what they promise."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


@pytest.mark.slow
def test_the_wheel_holds_every_module(tmp_path):
    """What `pip install .` (and the image) installs: every module of the source tree."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("anthropic_work_exporter-*.whl")
    packed = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".py")}
    source = {str(p.relative_to(ROOT)) for p in (ROOT / "exporter").rglob("*.py")}
    assert packed == source


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


def test_every_test_the_docs_name_as_holding_a_guarantee_exists():
    """docs/robustness.md and the README say which test holds each guarantee: each is in the suite."""
    defined = {
        name
        for path in (ROOT / "tests").glob("test_*.py")
        for name in re.findall(r"^def (test_\w+)", path.read_text(), re.M)
    }
    for doc in (ROOT / "docs" / "robustness.md", ROOT / "README.md"):
        modules = {path.stem for path in (ROOT / "tests").glob("test_*.py")}
        named = set(re.findall(r"\b(test_\w+)\b(?!\.py)", doc.read_text())) - modules
        assert named <= defined, (doc.name, sorted(named - defined))
