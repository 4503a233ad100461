"""The Dockerfile and the README, checked for what they promise."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

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
    names = zipfile.ZipFile(wheel).namelist()
    packed = {name for name in names if name.endswith(".py")}
    source = {str(p.relative_to(ROOT)) for p in (ROOT / "exporter").rglob("*.py")}
    assert packed == source
    assert "exporter/web/runbooks.html" in names  # the page /docs/runbooks serves


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


def test_every_source_file_the_docs_name_exists():
    """Modules moved into layers once and the docs kept the old paths: each `exporter/….py` named
    in README.md, docs/ and the chart's README is a file of the package."""
    docs = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "deploy").rglob("README.md")]
    named = {path for doc in docs for path in re.findall(r"\bexporter/[\w/]+\.py\b", doc.read_text())}
    assert named, "the docs name no source file: the pattern is wrong"
    assert sorted(path for path in named if not (ROOT / path).is_file()) == []


PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUNTIME = {
    canonicalize_name(Requirement(r).name): Requirement(r) for r in PYPROJECT["project"]["dependencies"]
}


def pinned(path: Path) -> dict[str, str]:
    """`name==version` lines of a requirements file: the name (canonical) and the version."""
    lines = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", path.read_text(), re.M)
    return {canonicalize_name(name): version for name, version in lines}


def test_the_image_lock_pins_every_dependency_within_pyproject_with_hashes():
    """requirements/image.lock (scripts/lock.sh) against pyproject.toml: every runtime dependency
    pinned to a version its specifier allows, and every pinned line with its files' hashes."""
    lock = pinned(ROOT / "requirements" / "image.lock")
    for name, requirement in RUNTIME.items():
        assert name in lock, f"{name} is not in the lock: run scripts/lock.sh"
        assert requirement.specifier.contains(lock[name]), f"{name} {lock[name]} against {requirement}"
    entries = re.split(r"\n(?=[A-Za-z0-9_.\-]+==)", (ROOT / "requirements" / "image.lock").read_text())
    assert all("--hash=sha256:" in entry for entry in entries if re.match(r"[A-Za-z0-9_.\-]+==", entry))
    assert "--require-hashes" in DOCKERFILE and "image.lock" in DOCKERFILE


def test_the_minimums_ci_runs_against_are_exactly_the_floors_pyproject_declares():
    minimum = pinned(ROOT / "requirements" / "minimum.txt")
    assert set(minimum) == set(RUNTIME)
    for name, requirement in RUNTIME.items():
        floors = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert floors, f"{name} has no floor"
        assert Version(minimum[name]) == Version(floors[0]), (name, minimum[name], floors[0])


def test_everything_the_exporter_imports_is_a_declared_dependency():
    """Every top-level module exporter/ imports is the standard library's, the exporter's own, or
    comes with a distribution pyproject.toml declares (yarl was imported and not declared)."""
    distributions = importlib.metadata.packages_distributions()
    imported: set[str] = set()
    for path in (ROOT / "exporter").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"exporter", "__future__"}
    for module in sorted(third_party):
        owners = {canonicalize_name(d) for d in distributions.get(module, [])}
        assert owners & set(RUNTIME), f"{module} is imported by exporter/ and not declared"
