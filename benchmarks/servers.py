"""Which HTTP server to serve /metrics with: the candidates, measured on the same work.

    pip install cheroot waitress        # the candidates the exporter does not ship
    python benchmarks/servers.py

Each server runs in its own process and answers every request as a scrape would:
50 ms of waiting (the listing) and then a 64 KiB body. Measured per server, in one run:

- **burst**: 200 scrapes sent at the same moment; how many get a 200 within 60 s, and
  the median and slowest answer;
- **slow clients**: 300 connections that send half a request and stop, then 20 normal
  scrapes one after another; the median normal scrape, and the server's threads while
  the 300 are held;
- **header timeout**: whether those 300 are disconnected by the server within 20 s.

Servers: `wsgiref` (what the exporter used before), `cheroot` (CherryPy's thread-pool
server, TLS built in), `waitress` (asyncore reader and thread pool, no TLS), `uvicorn`
(its default protocol) and `exporter` (uvicorn's H11 protocol as `exporter.server`
hardens it). Not a test: the figures belong to this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx
from harness import ROOT, free_port, status

BODY_BYTES = 64 * 1024
PARTIAL = b"GET /metrics HTTP/1.1\r\nHost: bench\r\n"

SERVERS = {
    "wsgiref": """
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer, WSGIRequestHandler, make_server
class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
class Quiet(WSGIRequestHandler):
    def log_message(self, *a): pass
def app(environ, start_response):
    time.sleep(0.05)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [BODY]
make_server("127.0.0.1", PORT, app, server_class=Server, handler_class=Quiet).serve_forever()
""",
    "cheroot": """
import time
from cheroot import wsgi
def app(environ, start_response):
    time.sleep(0.05)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [BODY]
server = wsgi.Server(("127.0.0.1", PORT), app, timeout=10, request_queue_size=2048)
server.start()
""",
    "waitress": """
import time
import waitress
def app(environ, start_response):
    time.sleep(0.05)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [BODY]
waitress.serve(app, host="127.0.0.1", port=PORT, channel_timeout=10, backlog=2048, _quiet=True)
""",
    "uvicorn": """
import asyncio
import uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await asyncio.sleep(0.05)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": BODY})
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="error", backlog=2048)
""",
    "exporter": """
import asyncio
from exporter.server import HttpServer, ServerLimits, TlsContext, bind
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await asyncio.sleep(0.05)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": BODY})
async def main():
    limits = ServerLimits()
    server = HttpServer(app, bind("127.0.0.1", PORT, limits.backlog), TlsContext(None), limits)
    await server.start()
    await asyncio.Event().wait()
asyncio.run(main())
""",
}


def threads_of(pid: int) -> int:
    return int(status(pid)["Threads"])


@contextlib.contextmanager
def serving(name: str):
    port = free_port()
    code = f"BODY = b'x' * {BODY_BYTES}\nPORT = {port}\n" + SERVERS[name]
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                httpx.get(url, timeout=2)
                break
            time.sleep(0.05)  # waiting for another process to open its port
        yield url, proc.pid
    finally:
        proc.kill()
        proc.wait()


async def burst(url: str, n: int = 200) -> dict[str, float]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one() -> float | None:
            started = time.monotonic()
            try:
                r = await client.get(f"{url}/metrics")
            except httpx.HTTPError:
                return None
            return time.monotonic() - started if r.status_code == 200 else None

        times = await asyncio.gather(*(one() for _ in range(n)))
    ok = [t for t in times if t is not None]
    return {
        "answered": len(ok),
        "median_s": statistics.median(ok) if ok else float("nan"),
        "slowest_s": max(ok) if ok else float("nan"),
    }


def slow_clients(url: str, pid: int, n: int = 300) -> dict[str, float]:
    host, port = url.removeprefix("http://").split(":")
    held = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)), timeout=30)
        s.sendall(PARTIAL)
        held.append(s)
    time.sleep(0.5)  # let the server take them in before counting its threads
    threads = threads_of(pid)
    times = []
    for _ in range(20):
        started = time.monotonic()
        try:
            ok = httpx.get(f"{url}/metrics", timeout=60).status_code == 200
        except httpx.HTTPError:
            ok = False
        times.append(time.monotonic() - started if ok else float("inf"))
    deadline = time.monotonic() + 20
    closed = 0
    for s in held:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        with contextlib.suppress(TimeoutError, OSError):  # still open at the deadline: not closed
            closed += s.recv(1) == b""
        s.close()
    return {
        "threads_with_slow_clients": threads,
        "scrape_median_s": statistics.median(times),
        "slow_clients_closed_within_20s": closed,
    }


def main() -> None:
    results: dict[str, dict[str, Any]] = {}
    for name in SERVERS:
        try:
            with serving(name) as (url, pid):
                results[name] = {**asyncio.run(burst(url)), **slow_clients(url, pid)}
        except Exception as exc:  # a candidate that is not installed, or that falls over
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(name, json.dumps(results[name]), flush=True)
    print(
        "\n| server | burst of 200: answered | median | slowest | threads with 300 slow clients "
        "| scrape median beside them | slow clients closed in 20 s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | {r['error']} | | | | | |")
            continue
        median, slowest, beside = (r[k] * 1000 for k in ("median_s", "slowest_s", "scrape_median_s"))
        print(
            f"| {name} | {r['answered']}/200 | {median:.0f} ms | {slowest:.0f} ms "
            f"| {r['threads_with_slow_clients']} | {beside:.0f} ms "
            f"| {r['slow_clients_closed_within_20s']}/300 |"
        )


if __name__ == "__main__":
    main()
