"""httpx's transport interface over aiohttp's connection pool and HTTP parser: the upstream HTTP path.

The exporter speaks httpx (`httpx.AsyncBaseTransport`, `httpx.Request`, `httpx.Response`): the
client, its tests and respx all use that interface. What carries the bytes is this transport,
chosen by measurement (`benchmarks/transports.py`, docs/performance.md): aiohttp parses HTTP in
C (llhttp) and keeps its pool without a lock per request, where httpcore's pure-Python h11 and
anyio locks cost twice the CPU per page or more; httpx's client layer (URL merging, cookies,
auth and redirect flows, event hooks) added 0.2 to 0.4 ms a page, for nothing this exporter uses.

What it keeps of the guarantees (each has its test):

- **the body as sent**: `auto_decompress=False`, so the client inflates gzip itself in bounded
  steps (a gzip bomb costs at most `api.max_response_bytes`);
- **no redirects, no cookies**: a redirect is an answer like any other (`follow_redirects=False`
  before), and nothing a server sets is sent back;
- **TLS verified** with the process's one SSL context;
- **proxies from the environment**: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`,
  as httpx's client honoured them, read once per host (aiohttp's own `trust_env` would also
  look for a `.netrc` in a thread on every request);
- **keep-alive per environment**: one transport, one pool of at most `max_connections`;
- **a connection that is given up on is closed**, not pooled: a body left unread (too large,
  cut by the deadline, cancelled) closes its connection; one read to its end is reused.

Errors become httpx's: a connection that cannot be made is `httpx.ConnectError`, one that breaks
or a response that is not HTTP is `httpx.ReadError` (both `httpx.TransportError`, which the
client reports as reason `connection`); an invalid URL is `httpx.LocalProtocolError`, our bug.
Time bounds are the client's (one `asyncio.timeout` around the whole exchange), not aiohttp's.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import httpx
import yarl


class _Body(httpx.AsyncByteStream):
    """The response body as it arrives; closing it before its end closes the connection."""

    def __init__(self, response: aiohttp.ClientResponse):
        self.response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.content.iter_any():
                yield chunk
        except aiohttp.ClientError as exc:  # the connection broke mid-body: not our bug
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        if self.response.content.at_eof():
            self.response.release()  # read to its end: the connection goes back to the pool
        else:
            self.response.close()  # given up on: a half-read connection is never reused


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One environment's connections: at most `max_connections`, kept alive between requests."""

    def __init__(self, tls: ssl.SSLContext, max_connections: int = 2):
        self.tls = tls
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}  # (scheme, host) -> proxy URL

    def _open(self) -> aiohttp.ClientSession:
        # Made at the first request: a ClientSession belongs to the running event loop.
        connector = aiohttp.TCPConnector(limit=self.max_connections, ssl=self.tls)
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session
        if session is None:
            session = self._session = self._open()
        url = request.url
        try:
            response = await session.request(
                request.method,
                yarl.URL(str(url), encoded=True),
                headers=request.headers,
                allow_redirects=False,
                proxy=self._proxy(url.scheme, url.host),
            )
        except aiohttp.InvalidURL as exc:  # a URL we built: our bug, not the server's
            raise httpx.LocalProtocolError(f"invalid URL: {exc}") from None
        except aiohttp.ClientConnectorError as exc:  # refused, unreachable, TLS verification failed
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from None
        except aiohttp.ClientError as exc:  # reset, closed, not HTTP at all
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from None
        return httpx.Response(response.status, headers=response.raw_headers, stream=_Body(response))

    def _proxy(self, scheme: str, host: str) -> str | None:
        """The proxy the environment names for this scheme and host, if any (NO_PROXY honoured)."""
        key = (scheme, host)
        if key not in self._proxies:
            proxies = urllib.request.getproxies_environment()
            proxy = proxies.get(scheme) or proxies.get("all")
            # In the standard library on every platform, though not in its type stubs.
            bypass = proxy is None or urllib.request.proxy_bypass_environment(host, proxies)  # type: ignore[attr-defined]
            self._proxies[key] = None if bypass else proxy
        return self._proxies[key]

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
