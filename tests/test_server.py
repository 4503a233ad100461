"""The HTTP server under load and abuse, over real loopback sockets.

Slow, half-sent, idle and never-reading clients must cost a socket, not a thread,
and never a listing; hundreds of scrapes at once must all be answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
from exposition import samples, value
from processes import wait_for
from upstream import config_for, running_exporter, running_simulator, static_env

from exporter.web.server import ServerLimits

NOW = time.time()
PARTIAL_REQUEST = b"GET /metrics HTTP/1.1\r\nHost: exporter\r\nX-Prometheus-Scrape-Timeout-Seconds: 5\r\n"


def exporter_threads() -> int:
    """Threads of this process but the simulator's (it serves each connection on its own thread)."""
    return sum("process_request_thread" not in t.name for t in threading.enumerate())


@contextlib.contextmanager
def sockets(address: str, count: int, send: bytes = b"", sources: int = 1) -> Iterator[list[socket.socket]]:
    """`count` connections, from `sources` loopback addresses in turn (127.0.0.1, .2, ...): one
    address may hold at most a quarter of the server's connections."""
    host, port = address.rsplit(":", 1)
    opened = []
    try:
        for n in range(count):
            source = (f"127.0.0.{1 + n % sources}", 0)
            s = socket.create_connection((host, int(port)), timeout=30, source_address=source)
            if send:
                s.sendall(send)
            opened.append(s)
        yield opened
    finally:
        for s in opened:
            s.close()


def test_200_simultaneous_scrapes_all_get_200_and_share_listings():
    env = static_env("env_a", 250, NOW)

    async def scrape_all(address: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            return await asyncio.gather(*(client.get(f"http://{address}/metrics") for _ in range(200)))

    with running_simulator(env) as (sim, url), running_exporter(config_for(url, env)) as exporter:
        sim.pause()
        responses = asyncio.run(scrape_all(exporter.address))
        truth = sim.truth("env_a")
    assert [r.status_code for r in responses] == [200] * 200
    for r in responses:
        assert (
            value(samples(r.text), "anthropic_work_items", environment_id="env_a", state="active")
            == (truth["items"]["active"])
        )
    assert env.requests < 200 * 3  # 3 pages a listing: overlapping scrapes shared theirs


def test_300_slow_clients_cost_no_threads_no_listings_and_do_not_delay_a_scrape():
    env = static_env("env_a", 5, NOW)
    limits = ServerLimits(header_timeout=60)  # slow clients are not cut off during this test
    with (
        running_simulator(env) as (_sim, url),
        running_exporter(config_for(url, env), limits=limits) as exporter,
    ):
        threads_before = exporter_threads()
        with sockets(exporter.address, 300, PARTIAL_REQUEST, sources=3):
            threads_with_slow_clients = exporter_threads()
            started = time.monotonic()
            r = httpx.get(f"http://{exporter.address}/metrics", timeout=60)
            took = time.monotonic() - started
    assert r.status_code == 200
    assert value(samples(r.text), "anthropic_work_scrape_success", environment_id="env_a") == 1
    assert threads_with_slow_clients - threads_before <= 2, (threads_before, threads_with_slow_clients)
    assert env.requests == 2  # the one real scrape (a page, work/stats); half-sent requests asked nothing
    # Had it queued behind the slow clients it would have waited for the header timeout (60 s).
    assert took < 30


def test_a_half_sent_request_whose_socket_closes_lists_nothing():
    env = static_env("env_a", 5, NOW)
    with running_simulator(env) as (_sim, url), running_exporter(config_for(url, env)) as exporter:
        with sockets(exporter.address, 20, PARTIAL_REQUEST):
            pass  # closed with their headers half sent
        ok = httpx.get(f"http://{exporter.address}/-/healthy")
    assert ok.status_code == 200
    assert env.requests == 0


def test_headers_that_do_not_arrive_in_time_get_the_connection_closed():
    env = static_env("env_a", 1, NOW)
    limits = ServerLimits(header_timeout=0.5)
    with (
        running_simulator(env) as (_sim, url),
        running_exporter(config_for(url, env), limits=limits) as exporter,
    ):
        with sockets(exporter.address, 1, PARTIAL_REQUEST) as (slow,):
            closed = slow.recv(1024)  # blocks until the server gives up on it
        with sockets(exporter.address, 1) as (silent,):
            closed_silent = silent.recv(1024)
    assert (closed, closed_silent) == (b"", b"")
    assert env.requests == 0


HEALTH = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"


def _answered(s: socket.socket) -> bytes:
    try:
        s.sendall(HEALTH)
        return s.recv(1024)
    except (ConnectionResetError, BrokenPipeError):
        return b""


def test_past_the_connection_limit_new_connections_are_closed():
    env = static_env("env_a", 1, NOW)
    limits = ServerLimits(max_connections=10)
    with (
        running_simulator(env) as (_sim, url),
        running_exporter(config_for(url, env), limits=limits) as exporter,
        sockets(exporter.address, 10) as held,
    ):
        # Ten kept-alive connections, all accepted: each had a request answered.
        assert all(_answered(s).startswith(b"HTTP/1.1 200") for s in held)
        with sockets(exporter.address, 1) as (eleventh,):
            refused = _answered(eleventh)
        held[0].close()
        # Once one closes, a new connection is served again.
        wait_for(
            "a free connection slot",
            lambda: _answered(socket.create_connection(exporter.address.rsplit(":", 1), timeout=10)),
        )
    assert refused == b""


def test_a_client_that_never_reads_holds_no_thread_and_blocks_no_one():
    envs = [static_env(f"env_{n}", 300, NOW) for n in range(4)]
    with running_simulator(*envs) as (_sim, url), running_exporter(config_for(url, *envs)) as exporter:
        threads_before = exporter_threads()
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 20  # pipelined, never read
        with sockets(exporter.address, 10, request):
            r = httpx.get(f"http://{exporter.address}/metrics", timeout=60)
            threads_during = exporter_threads()
    assert r.status_code == 200
    assert threads_during - threads_before <= 2


def test_kept_alive_requests_are_not_held_back_by_nagle_and_delayed_acks():
    """Headers and body are two writes: without TCP_NODELAY the body waits for the client's
    delayed ACK, 40 ms per request on a kept-alive connection, so twenty took at least 0.8 s.
    The baseline, in the same run: twenty requests each on a connection of its own, which no
    delayed ACK holds (a new connection acknowledges at once). Kept alive must be no slower."""
    env = static_env("env_a", 1, time.time())

    def health(s: socket.socket) -> None:
        s.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: exporter\r\n\r\n")
        answer = b""
        while not answer.endswith(b"Healthy\n"):
            answer += s.recv(65536)

    with running_simulator(env) as (_sim, url), running_exporter(config_for(url, env)) as exporter:
        host, port = exporter.address.rsplit(":", 1)
        started = time.monotonic()
        for _ in range(20):
            with socket.create_connection((host, int(port))) as s:
                health(s)
        fresh = time.monotonic() - started
        with socket.create_connection((host, int(port))) as s:
            started = time.monotonic()
            for _ in range(20):
                health(s)
            elapsed = time.monotonic() - started
    # Stalled, 20 x 40 ms; not stalled, below the baseline (no connection to make each time).
    assert elapsed < 2 * fresh + 0.1, (
        f"20 kept-alive requests took {elapsed:.3f} s, on new ones {fresh:.3f} s"
    )
