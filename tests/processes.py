"""Run the simulator and the exporter as separate processes on free loopback ports."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def simulator_process(*args: str) -> Iterator[dict]:
    """`python -m exporter.simulator --port 0 ARGS`; yields what it prints: url and keys."""
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter.simulator", "--port", "0", *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield json.loads(process.stdout.readline())
    finally:
        _stop(process)


@contextlib.contextmanager
def exporter_process(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[tuple[str, Path]]:
    """The exporter CLI on a free port; yields its base URL and the path of its log."""
    port = free_port()
    log_path = Path(cwd or ".") / f"exporter-{port}.log"
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--web.listen-address", f"127.0.0.1:{port}", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**base, **(env or {})},
            cwd=cwd,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "exporter not ready in 30 s"
            time.sleep(0.05)  # polling a starting process: nothing to wait on but its port
        yield url, log_path
    finally:
        _stop(process)
