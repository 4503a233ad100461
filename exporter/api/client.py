"""Bytes from the API: one GET, bounded in time and size. No retries, no metrics, no JSON.

`UpstreamClient.get` sends one request and returns its status, headers and whole
body, or raises `TransportFailure`. Two bounds hold whatever the server does:

- **time**: the whole exchange, headers and every byte of the body, ends within
  `timeout` seconds (httpx's own timeouts are per read, so a body that trickles
  one byte a second would never end on them alone);
- **size**: at most `max_body_bytes` decompressed bytes are kept. The client asks
  for gzip only and inflates it itself, in bounded steps, so a small gzip that
  inflates to gigabytes costs at most the bound, and a malformed one is a
  clean failure rather than an httpx DecodingError.

Each environment gets its own transport (its own small connection pool): with one
pool for all environments, httpcore's check of every idle connection on every request
was a fifth of the exporter's CPU. The request goes straight to the transport
(`httpx.AsyncBaseTransport.handle_async_request`): httpx's client layer (URL merging,
cookies, auth and redirect flows, event hooks) did nothing this exporter uses and cost
0.2 to 0.4 ms of CPU a page, more than half what the transport costs. In production the
transport is `transport.AiohttpTransport`; tests give `httpx.AsyncHTTPTransport` (which
respx intercepts) or `httpx.MockTransport`.

Retries, budgets, deadlines and counting belong to the engine, which calls this.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Mapping
from typing import NamedTuple
from urllib.parse import urlencode

import httpx

# An error body is only read for its message; more than this is not an API error body.
MAX_ERROR_BODY_BYTES = 64 * 1024


class Reply(NamedTuple):
    status: int
    headers: Mapping[str, str]
    body: bytes


class TransportFailure(Exception):
    """No usable response. `code` is what the request counts as, `reason` why the listing fails."""

    def __init__(self, code: str, reason: str, message: str):
        super().__init__(message)
        self.code = code  # "timeout", "error", or the HTTP status when one arrived
        self.reason = reason  # timeout, connection, response_too_large, invalid_response


class UpstreamClient:
    """GETs over one transport per pool key (the engine uses the environment id)."""

    def __init__(self, make_transport: Callable[[], httpx.AsyncBaseTransport], max_body_bytes: int):
        self.make_transport = make_transport
        self.max_body_bytes = max_body_bytes
        self._pools: dict[str, httpx.AsyncBaseTransport] = {}

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for transport in pools:
            await transport.aclose()

    async def forget_all_but(self, pools: set[str]) -> None:
        """Close the connections of pools no longer used (environments no longer watched)."""
        for key in set(self._pools) - pools:
            await self._pools.pop(key).aclose()

    async def get(
        self,
        url: str,
        params: Mapping[str, str | int],
        headers: Mapping[str, str],
        timeout: float,
        pool: str = "",
    ) -> Reply:
        """One GET that ends within `timeout` seconds, however slowly the server answers."""
        transport = self._pools.get(pool)
        if transport is None:
            transport = self._pools[pool] = self.make_transport()
        try:
            async with asyncio.timeout(timeout):
                return await self._get(transport, url, params, headers, timeout)
        # Upstream slow, not our bug: our bound on the whole exchange, or the transport's per read.
        except (TimeoutError, httpx.TimeoutException):
            raise TransportFailure(
                "timeout", "timeout", f"no complete response within {timeout:.3g}s"
            ) from None
        except httpx.LocalProtocolError:  # a request we could not send: our bug, not the server's
            raise
        except httpx.TransportError as exc:  # refused, reset, TLS failure, broken HTTP from the server
            raise TransportFailure("error", "connection", f"connection error: {type(exc).__name__}") from None

    async def _get(
        self,
        transport: httpx.AsyncBaseTransport,
        url: str,
        params: Mapping[str, str | int],
        headers: Mapping[str, str],
        timeout: float,
    ) -> Reply:
        # What httpx's params= would make, without its merging (a fifth of building the request).
        target = f"{url}?{urlencode(params)}" if params else url
        # httpcore's timeouts are per read, inside ours (aiohttp's transport reads only ours).
        per_read = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        headers = {**headers, "Accept-Encoding": "gzip"}
        request = httpx.Request("GET", target, headers=headers, extensions={"timeout": per_read})
        response = await transport.handle_async_request(request)
        try:
            if response.status_code == 200:
                body = await _read_body(response, self.max_body_bytes)
            else:  # only its message is wanted: the first bytes will do
                body = await _read_body(response, MAX_ERROR_BODY_BYTES, truncate=True)
        finally:
            await response.aclose()
        return Reply(response.status_code, response.headers, body)


async def _read_body(response: httpx.Response, limit: int, truncate: bool = False) -> bytes:
    """The decompressed body, at most `limit` bytes; raw chunks are inflated in bounded steps.

    Past `limit` the response fails as too large, or with `truncate` the first `limit`
    bytes are returned and the rest is never read.

    Read with aiter_raw() and never stored on the Response: httpx responses sit in a
    reference cycle until the cyclic GC runs, and a stored body would stay alive until then.
    """
    status = str(response.status_code)
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        inflate = None
    elif encoding in ("gzip", "x-gzip"):
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        inflate = zlib.decompressobj()
    else:
        raise TransportFailure(status, "invalid_response", f"unsupported content-encoding {encoding[:20]!r}")
    parts: list[bytes] = []
    size = 0
    try:
        async for raw in response.aiter_raw():
            if inflate is None:
                parts.append(raw)
                size += len(raw)
            else:
                data = raw
                while data:
                    # At most one byte past the limit per step: enough to tell that it is past.
                    out = inflate.decompress(data, limit - size + 1)
                    parts.append(out)
                    size += len(out)
                    if size > limit:
                        break
                    data = inflate.unconsumed_tail
            if size > limit:
                if truncate:
                    return b"".join(parts)[:limit]
                raise TransportFailure(status, "response_too_large", f"response body over {limit} bytes")
        if inflate is not None and not inflate.eof and not truncate:
            raise TransportFailure(status, "invalid_response", f"{encoding} body ends before its end marker")
    except zlib.error:  # not gzip at all, or corrupt
        raise TransportFailure(status, "invalid_response", f"malformed {encoding} body") from None
    return b"".join(parts)
