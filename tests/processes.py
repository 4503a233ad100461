"""Run programs as separate processes on free loopback ports: the simulator, the exporter,
Prometheus, Alertmanager."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check: Callable[[], T], timeout: float = 60.0) -> T:
    """Poll `check` until it returns something truthy; another process's state has no event to wait on."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def running(
    args: list[str], log: Path, ready_url: str, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[None]:
    """Start `args` with its output in `log`; yield once `ready_url` answers 200; stop it after."""
    with open(log, "w") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:

        def ready() -> bool:
            assert process.poll() is None, log.read_text()
            if ready_url.startswith("tcp://"):  # TLS or basic auth: accepting connections is enough
                host, port = ready_url.removeprefix("tcp://").rsplit(":", 1)
                with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
                    return True
                return False
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(ready_url, timeout=1).status_code == 200
            return False

        wait_for(f"{args[0]} to be ready", ready, 30)
        yield
    finally:
        _stop(process)


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
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, plain_http: bool = True
) -> Iterator[tuple[str, Path]]:
    """The exporter CLI on a free port; yields its base URL and the path of its log.

    Ready when /-/ready answers, or (not `plain_http`: TLS, basic auth) when it accepts connections."""
    port = free_port()
    log_path = Path(cwd or ".") / f"exporter-{port}.log"
    url = f"http://127.0.0.1:{port}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    command = [sys.executable, "-m", "exporter", "--web.listen-address", f"127.0.0.1:{port}", *args]
    ready = f"{url}/-/ready" if plain_http else f"tcp://127.0.0.1:{port}"
    with running(command, log_path, ready, env={**base, **(env or {})}, cwd=cwd):
        yield url, log_path
