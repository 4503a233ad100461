"""Real Prometheus programs for tests: skipped locally when missing, required in CI."""

from __future__ import annotations

import os
import shutil

import pytest

PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "openssl": "openssl",
}


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        message = (
            f"{binary} is not installed (Debian package {PACKAGES.get(binary, binary)}; "
            "./scripts/test.sh installs it when run as root)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs {message}")
        pytest.skip(message)
    return path
