"""What the benchmark scripts share: the simulator and the exporter as separate processes,
on free loopback ports, and what /proc says about a process."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


# The packages a listing's bytes pass through, whose versions every benchmark prints.
HOT_PATH = (
    "aiohttp",
    "yarl",
    "multidict",
    "httpx",
    "msgspec",
    "prometheus-client",
    "uvicorn",
    "h11",
    "httpcore",
    "sniffio",
)


def users_python() -> str:
    """The Python of a virtual environment with only `pip install .` in it: what users run.

    Made once per version of the project's files (a hash of pyproject.toml and exporter/), in the
    temporary directory; the test venv has test dependencies (respx, the anthropic SDK, sniffio
    through them) that users do not, and which can change what the HTTP path costs.
    """
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    for path in sorted((ROOT / "exporter").rglob("*.py")):
        digest.update(path.read_bytes())
    venv = Path(tempfile.gettempdir()) / "anthropic-work-exporter-bench" / digest.hexdigest()[:16]
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        quiet = ["--quiet", "--disable-pip-version-check"]
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", *quiet, str(ROOT)], capture_output=True, text=True
        )
        if pip.returncode:  # pip's own warnings are noise unless it failed
            shutil.rmtree(venv)
            raise RuntimeError(f"pip install . failed:\n{pip.stdout}{pip.stderr}")
    return str(python)


_VERSIONS = """
import importlib.metadata as m, sys
def version(package):
    try:
        return f"{package} {m.version(package)}"
    except m.PackageNotFoundError:
        return f"{package} (not installed)"
print(", ".join(version(p) for p in sys.argv[1:]))
"""


def versions(python: str) -> str:
    """`aiohttp 3.14.5, ...`: the hot path's packages as installed for `python`."""
    out = subprocess.run([python, "-c", _VERSIONS, *HOT_PATH], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str) -> None:
    for _ in range(300):
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)  # waiting for another process to open its port
    raise RuntimeError(f"{url} did not answer")


@contextlib.contextmanager
def simulator(*args: str, pause: bool = False) -> Iterator[dict]:
    """`python -m exporter.simulator --port 0 ARGS`; yields what it prints (url, keys)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter.simulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        if pause:
            httpx.post(f"{info['url']}/_sim/pause").raise_for_status()
        yield info
    finally:
        proc.terminate()
        proc.wait()


@contextlib.contextmanager
def exporter(
    sim: dict, python: str | None = None, **sections: dict[str, Any]
) -> Iterator[tuple[str, subprocess.Popen]]:
    """The exporter's CLI, run by `python` (by default `users_python()`: as users install it),
    watching every environment of `sim` with its own key.

    `sections` are merged into the config: `api={"page_size": 100}`, `scrape={...}`.
    Yields its URL and its process.
    """
    envs = [
        {"id": env_id, "credentials": {"type": "environment_key", "value_env": f"K{n}"}}
        for n, env_id in enumerate(sim["environments"])
    ]
    api = {"base_url": sim["url"], **sections.pop("api", {})}
    keys = {f"K{n}": key for n, key in enumerate(sim["environments"].values())}
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = {"api": api, **sections, "environments": envs}
        Path(tmp, "config.yaml").write_text(yaml.safe_dump(config))
        command = [python or users_python(), "-m", "exporter", "--config.file", "config.yaml"]
        command += ["--web.listen-address", f"127.0.0.1:{port}", "--log.level", "error"]
        proc = subprocess.Popen(command, cwd=tmp, env={**os.environ, **keys})
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(f"{url}/-/ready")
            yield url, proc
        finally:
            proc.terminate()
            proc.wait()


def status(pid: int) -> dict[str, str]:
    """/proc/PID/status as a mapping."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime + stime
