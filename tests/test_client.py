"""The upstream client: one GET, bounded in time and in decompressed size, whatever the server sends."""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib

import httpx
import pytest
from conftest import run_virtual

from exporter.api.client import MAX_ERROR_BODY_BYTES, Reply, TransportFailure, UpstreamClient

URL = "https://api.anthropic.com/v1/environments/env_a/work"
LIMIT = 1 << 20


class Slow(httpx.AsyncByteStream):
    """A body that trickles: one byte per `interval` seconds of the loop's (virtual) clock."""

    def __init__(self, body: bytes, interval: float):
        self.body, self.interval = body, interval

    async def __aiter__(self):
        for i in range(len(self.body)):
            await asyncio.sleep(self.interval)
            yield self.body[i : i + 1]


def answer(status: int, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    """A response whose body is still to be read, as one from the network is."""
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(content))


def get(
    response: httpx.Response | Exception, timeout: float = 10.0
) -> tuple[Reply | TransportFailure, float]:
    """One GET against a transport that answers `response`; what it gave and how long it took."""

    def respond(request: httpx.Request) -> httpx.Response:
        if isinstance(response, Exception):
            raise response
        return response

    async def go():
        client = UpstreamClient(lambda: httpx.MockTransport(respond), LIMIT)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            outcome: Reply | TransportFailure = await client.get(URL, {"limit": 5}, {}, timeout)
        except TransportFailure as failure:
            outcome = failure
        finally:
            await client.aclose()
        return outcome, loop.time() - started

    return run_virtual(go())


def bomb(size: int) -> bytes:
    """`size` zero bytes, gzipped a MiB at a time (the test itself never holds them all)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    mib = bytes(1 << 20)
    return b"".join(compressor.compress(mib) for _ in range(size >> 20)) + compressor.flush()


@pytest.mark.parametrize(
    ("headers", "content"),
    [
        ({}, b'{"data": []}'),
        ({"content-encoding": "gzip"}, gzip.compress(b'{"data": []}')),
        ({"content-encoding": "deflate"}, zlib.compress(b'{"data": []}')),
    ],
    ids=["identity", "gzip", "deflate"],
)
def test_the_body_is_returned_decompressed(headers, content):
    reply, _ = get(answer(200, content, headers))
    assert reply == Reply(200, reply.headers, b'{"data": []}')


@pytest.mark.parametrize(
    ("headers", "content", "reason"),
    [
        ({"content-encoding": "gzip"}, bomb(64 * LIMIT), "response_too_large"),  # 64 MiB from 64 KiB
        ({}, bytes(LIMIT + 1), "response_too_large"),
        ({"content-encoding": "gzip"}, b"\x1f\x8b\x08\x00not gzip at all", "invalid_response"),
        ({"content-encoding": "gzip"}, gzip.compress(b'{"data": []}')[:-12], "invalid_response"),
        ({"content-encoding": "br"}, b"...", "invalid_response"),
    ],
    ids=["gzip-bomb", "identity-too-large", "malformed-gzip", "truncated-gzip", "unasked-encoding"],
)
def test_bodies_past_the_limit_or_undecodable_fail_cleanly(headers, content, reason):
    failure, _ = get(answer(200, content, headers))
    assert isinstance(failure, TransportFailure)
    assert (failure.code, failure.reason) == ("200", reason)


@pytest.mark.slow
def test_a_gzip_bomb_costs_at_most_the_limit():
    """Inflating stops one byte past the limit: 1 GiB of zeros is never held."""
    gigabyte = answer(200, bomb(1 << 30), {"content-encoding": "gzip"})  # about 1 MiB on the wire
    tracemalloc.start()
    try:
        failure, _ = get(gigabyte)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(failure, TransportFailure) and failure.reason == "response_too_large"
    assert peak < 8 * LIMIT, peak


def test_an_error_body_is_only_read_as_far_as_its_message():
    reply, _ = get(answer(500, b"x" * (4 * MAX_ERROR_BODY_BYTES)))
    assert isinstance(reply, Reply)
    assert reply.status == 500 and len(reply.body) == MAX_ERROR_BODY_BYTES


def test_a_trickling_body_ends_at_the_timeout_not_per_read():
    """One byte a second never trips a per-read timeout; the total timeout ends it."""
    failure, took = get(httpx.Response(200, stream=Slow(b'{"data": []}' * 100, 1.0)), timeout=3.5)
    assert isinstance(failure, TransportFailure)
    assert (failure.code, failure.reason) == ("timeout", "timeout")
    assert took == 3.5


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (httpx.ConnectError("refused"), "error", "connection"),
        (httpx.ReadError("reset"), "error", "connection"),
        (httpx.RemoteProtocolError("garbage"), "error", "connection"),
        (httpx.ReadTimeout("slow"), "timeout", "timeout"),
        (httpx.PoolTimeout("busy"), "timeout", "timeout"),
    ],
)
def test_transport_errors_become_failures(error, code, reason):
    failure, _ = get(error)
    assert isinstance(failure, TransportFailure)
    assert (failure.code, failure.reason) == (code, reason)


def test_a_request_we_cannot_send_is_our_bug_not_the_servers():
    with pytest.raises(httpx.LocalProtocolError):
        get(httpx.LocalProtocolError("illegal header value"))


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"limit": 100},
        {"limit": 100, "page": "page_MjAy+Ni0x/MS0z=="},
        {"limit": 5, "page": "a cursor & more?#%"},
    ],
    ids=["none", "limit", "base64-cursor", "reserved-characters"],
)
def test_each_request_is_what_httpx_would_send_with_its_headers_as_given(params):
    """The query string is made without httpx's merging: what is sent must not differ from httpx's
    own, and a header that changes (a rotated key) is sent from the next request on."""
    sent: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answer(200, b"{}")

    async def go():
        client = UpstreamClient(lambda: httpx.MockTransport(respond), LIMIT)
        for key in ("old", "old", "new"):
            await client.get(URL, params, {"Authorization": f"Bearer {key}"}, 10.0)
        await client.aclose()

    run_virtual(go())
    expected = httpx.Request("GET", URL, params=params)
    assert [str(r.url) for r in sent] == [str(expected.url)] * 3
    assert [r.headers["authorization"] for r in sent] == ["Bearer old", "Bearer old", "Bearer new"]
    assert {r.headers["accept-encoding"] for r in sent} == {"gzip"}
