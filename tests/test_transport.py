"""The upstream HTTP path as the exporter runs it (`UpstreamClient` over `AiohttpTransport`), against real
servers on loopback: keep-alive per environment, a connection given up on is closed, TLS verified,
proxies from the environment, the body as sent (gzip inflated by the client, bounded)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from exporter.api.client import TransportFailure, UpstreamClient
from exporter.api.transport import AiohttpTransport

LIMIT = 1 << 20


@dataclass
class Server:
    """A raw HTTP/1.1 server: each connection answers its requests with `respond(path)`."""

    port: int = 0
    connections: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)  # (request line, host header)
    closed: list[float] = field(default_factory=list)  # when the client closed each connection


def _serve(
    respond: Callable[[str], bytes], tls: ssl.SSLContext | None = None
) -> contextlib.AbstractContextManager[Server]:
    @contextlib.contextmanager
    def run() -> Iterator[Server]:
        server = Server()
        listener = socket.create_server(("127.0.0.1", 0))
        server.port = listener.getsockname()[1]
        stop = threading.Event()

        def handle(conn: socket.socket) -> None:
            with contextlib.suppress(OSError), conn:
                if tls is not None:
                    conn = tls.wrap_socket(conn, server_side=True)
                buffer = b""
                while not stop.is_set():
                    chunk = conn.recv(65536)
                    if not chunk:
                        server.closed.append(time.monotonic())
                        return
                    buffer += chunk
                    while b"\r\n\r\n" in buffer:
                        head, buffer = buffer.split(b"\r\n\r\n", 1)
                        lines = head.decode("latin-1").split("\r\n")
                        host = next(
                            (h.split(":", 1)[1].strip() for h in lines if h.lower().startswith("host:")), ""
                        )
                        server.requests.append((lines[0], host))
                        conn.sendall(respond(lines[0].split()[1]))

        def accept() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                server.connections += 1
                threading.Thread(target=handle, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        try:
            yield server
        finally:
            stop.set()
            listener.close()

    return run()


def response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return head.encode() + b"\r\n" + body


def get_all(
    client: UpstreamClient, urls: list[str], timeout: float = 10.0, params: dict[str, str | int] | None = None
) -> list[object]:
    async def go() -> list[object]:
        out: list[object] = []
        try:
            for url in urls:
                try:
                    out.append(await client.get(url, params or {}, {}, timeout, pool="env_a"))
                except TransportFailure as failure:
                    out.append(failure)
        finally:
            await client.aclose()
        return out

    return asyncio.run(go())


def plain_client() -> UpstreamClient:
    return UpstreamClient(lambda: AiohttpTransport(ssl.create_default_context(), max_connections=2), LIMIT)


def test_one_environment_keeps_its_connection_alive_between_requests():
    with _serve(lambda path: response(b'{"data": []}')) as server:
        url = f"http://127.0.0.1:{server.port}/v1/x"
        replies = get_all(plain_client(), [url, url, url])
    assert [r.status for r in replies] == [200, 200, 200]  # type: ignore[attr-defined]
    assert server.connections == 1


def test_a_body_given_up_on_closes_its_connection_and_the_next_request_opens_another():
    """Past the size bound with the rest of the body still to come: the connection is dropped, not
    pooled (a body the transport has whole is safe to reuse the connection after, and aiohttp does)."""

    def respond(path: str) -> bytes:
        if path == "/big":  # says twice the bound, sends a little past it, and the rest never
            return b"HTTP/1.1 200 X\r\nContent-Length: %d\r\n\r\n" % (2 * LIMIT) + b"x" * (LIMIT + 10)
        return response(b"ok")

    with _serve(respond) as server:
        base = f"http://127.0.0.1:{server.port}"
        replies = get_all(plain_client(), [f"{base}/big", f"{base}/small"])
        for _ in range(100):  # the server notices the close when it next reads
            if server.closed:
                break
            time.sleep(0.02)
    assert isinstance(replies[0], TransportFailure) and replies[0].reason == "response_too_large"
    assert replies[1].body == b"ok"  # type: ignore[attr-defined]
    assert server.connections == 2  # the half-read connection was not reused
    assert server.closed


def test_a_request_cut_by_its_time_bound_closes_the_connection():
    def trickle(path: str) -> bytes:
        time.sleep(3)  # headers never come within the client's second
        return response(b"late")

    with _serve(trickle) as server:
        started = time.monotonic()
        (failure,) = get_all(plain_client(), [f"http://127.0.0.1:{server.port}/slow"], timeout=1.0)
        deadline = time.monotonic()
        for _ in range(100):  # the server thread sees the close when its sleep ends
            if server.closed:
                break
            time.sleep(0.05)
    assert isinstance(failure, TransportFailure) and failure.reason == "timeout"
    assert deadline - started < 2.5
    assert server.closed, "the connection stayed open after the request was abandoned"


def test_gzip_is_inflated_by_the_client_in_bounded_steps_not_by_the_transport():
    bomb = gzip.compress(b"\0" * (LIMIT * 4), compresslevel=9)
    small = gzip.compress(b'{"data": []}')
    with _serve(
        lambda path: response(bomb if path == "/bomb" else small, headers={"Content-Encoding": "gzip"})
    ) as server:
        base = f"http://127.0.0.1:{server.port}"
        bombed, fine = get_all(plain_client(), [f"{base}/bomb", f"{base}/small"])
    assert isinstance(bombed, TransportFailure) and bombed.reason == "response_too_large"
    assert fine.body == b'{"data": []}'  # type: ignore[attr-defined]


def test_tls_is_verified_against_the_context_given(pki):
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(pki / "server.crt", pki / "server.key")
    trusting = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    with _serve(lambda path: response(b"secret-free"), tls=server_tls) as server:
        url = f"https://127.0.0.1:{server.port}/v1/x"
        (refused,) = get_all(
            UpstreamClient(lambda: AiohttpTransport(ssl.create_default_context()), LIMIT), [url]
        )
        (trusted,) = get_all(UpstreamClient(lambda: AiohttpTransport(trusting), LIMIT), [url])
    assert isinstance(refused, TransportFailure) and refused.reason == "connection"
    assert trusted.body == b"secret-free"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("no_proxy", "through_proxy"), [("", True), ("127.0.0.1", False)])
def test_proxies_come_from_the_environment(monkeypatch, no_proxy, through_proxy):
    """HTTP_PROXY and NO_PROXY, as httpx's client honoured them: the proxy is sent the absolute URL."""
    with (
        _serve(lambda path: response(b"direct")) as upstream,
        _serve(lambda path: response(b"via proxy")) as proxy,
    ):
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("NO_PROXY", no_proxy)
        url = f"http://127.0.0.1:{upstream.port}/v1/x"
        (reply,) = get_all(plain_client(), [url], params={"limit": 5})
    if through_proxy:
        assert reply.body == b"via proxy"  # type: ignore[attr-defined]
        assert proxy.requests == [(f"GET {url}?limit=5 HTTP/1.1", f"127.0.0.1:{upstream.port}")]
    else:
        assert reply.body == b"direct" and proxy.requests == []  # type: ignore[attr-defined]
