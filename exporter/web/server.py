"""The HTTP server: uvicorn's HTTP/1.1 protocol on the exporter's event loop, hardened.

Every connection is a protocol object on one event loop, not a thread: a slow or
idle client costs a socket and a few kilobytes, and the application is called
only once a request's headers are complete. On top of uvicorn's H11 protocol:

- **a header timeout**: a request whose headers are not complete within
  `header_timeout` seconds of its first byte (or of the connection, for the first
  request) has its connection closed; it never reaches the application;
- **a connection limit**: past `max_connections` open connections, or past
  `max_connections_per_client` from one client address, new ones are closed at once:
  one client cannot take every connection from Prometheus;
- **TLS per connection**: the handshake runs as its own task (`loop.start_tls`)
  with the same timeout, using the context current at accept time, so a web
  config reload applies to new connections; a failed handshake (plain HTTP, an
  old TLS version, a missing client certificate) is one log line, and at most one a
  minute per client address (with how many more failed), so a client cannot flood the log;
- **graceful stop**: requests being answered get `graceful_seconds` to finish.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from exporter.redact import Redactor
from exporter.web.auth import WebConfig

log = logging.getLogger("exporter.server")


@dataclass(frozen=True)
class ServerLimits:
    header_timeout: float = 10.0  # request headers (and the TLS handshake) must arrive within this
    keep_alive: int = 120  # idle keep-alive connections are closed after this; scrapes every <= 2m reuse them
    max_connections: int = 1024
    max_connections_per_client: int = 256  # from one address: a quarter, so three others always fit
    backlog: int = 2048  # capped by the kernel's net.core.somaxconn
    graceful_seconds: int = 5  # on SIGTERM, for requests already being answered


class TlsContext:
    """The TLS context new connections use; None serves plain HTTP. A reload replaces it."""

    def __init__(self, context: ssl.SSLContext | None):
        self.context = context

    def refusal(self, running: WebConfig | None, loaded: WebConfig | None) -> str | None:
        """Turning TLS on or off changes the listening socket's protocol: that needs a restart."""
        if _tls(running) != _tls(loaded):
            return "web config: turning TLS on or off needs a restart of the exporter"
        return None

    def apply(self, web: WebConfig | None) -> None:
        self.context = web.ssl_context if web is not None else None


def _tls(web: WebConfig | None) -> bool:
    return web is not None and web.ssl_context is not None


class _Connections:
    """Open connections, in all and per client address; and when each address last had a failed
    TLS handshake logged (a bounded table: the oldest address is forgotten first)."""

    def __init__(self) -> None:
        self.open = 0
        self.by_client: dict[str, int] = {}
        self.handshakes: dict[str, tuple[float, int]] = {}  # address -> (logged at, failures since)

    def handshake_failed(self, address: str, now: float) -> int | None:
        """None if this failure is not to be logged; else how many were not logged before it."""
        logged_at, since = self.handshakes.pop(address, (-HANDSHAKE_LOG_SECONDS, 0))
        if now - logged_at < HANDSHAKE_LOG_SECONDS:
            self.handshakes[address] = (logged_at, since + 1)
            return None
        self.handshakes[address] = (now, 0)
        while len(self.handshakes) > HANDSHAKE_ADDRESSES:
            del self.handshakes[next(iter(self.handshakes))]
        return since


HANDSHAKE_LOG_SECONDS = 60.0  # one failed-handshake line a minute per client address
HANDSHAKE_ADDRESSES = 1024  # addresses remembered for that


class _Protocol(H11Protocol):
    """H11Protocol plus the header timeout, the connection limit and per-connection TLS."""

    tls: TlsContext
    limits: ServerLimits
    connections_open: _Connections

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._raw: asyncio.Transport | None = None
        self._made = False  # uvicorn's side knows the connection (after TLS, if any)
        self._early: list[bytes] = []  # decrypted bytes that arrived before the handshake's waiter woke us
        self._counted = False
        self._request_timer: asyncio.TimerHandle | None = None
        self._handshake_task: asyncio.Task[None] | None = None
        self._client = "unknown"

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        opened = self.connections_open
        self._client = _host(transport.get_extra_info("peername"))
        if (
            opened.open >= self.limits.max_connections
            or opened.by_client.get(self._client, 0) >= self.limits.max_connections_per_client
        ):
            transport.abort()
            return
        opened.open += 1
        opened.by_client[self._client] = opened.by_client.get(self._client, 0) + 1
        self._counted = True
        self._raw = transport
        # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and an accepted
        # socket inherits proto 0 from socket.create_server: without it, an answer's body waited
        # behind its headers for the client's delayed ACK, 40 ms on every kept-alive request.
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._arm()
        context = self.tls.context
        if context is None:
            self._made = True
            super().connection_made(transport)
            return
        transport.pause_reading()  # no bytes may reach HTTP parsing before the handshake
        # Held here: the event loop keeps only a weak reference to a task.
        self._handshake_task = self.loop.create_task(self._handshake(transport, context))

    async def _handshake(self, transport: asyncio.Transport, context: ssl.SSLContext) -> None:
        peer = transport.get_extra_info("peername")
        try:
            secure = await self.loop.start_tls(
                transport, self, context, server_side=True, ssl_handshake_timeout=self.limits.header_timeout
            )
        except ssl.SSLError as exc:  # a client speaking plain HTTP, an old TLS version, no certificate
            unlogged = self.connections_open.handshake_failed(self._client, self.loop.time())
            if unlogged is not None:
                extra = {"client": _address(peer), "error": _ssl_reason(exc)}
                log.warning(
                    "TLS handshake failed",
                    extra={**extra, "not_logged_since": unlogged} if unlogged else extra,
                )
            self._release()
            return
        except (OSError, TimeoutError) as exc:  # the client went away or was too slow: nothing to fix here
            log.debug(
                "TLS handshake abandoned", extra={"client": _address(peer), "error": type(exc).__name__}
            )
            self._release()
            return
        if secure is None or secure.is_closing():
            self._release()
            return
        self._made = True
        super().connection_made(secure)
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        if not self._made:
            self._early.append(data)
            return
        if self._request_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)

    def on_response_complete(self) -> None:
        self._disarm()  # idle now: uvicorn's keep-alive timer takes over until the next request
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        if self._made:
            self._made = False
            super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._request_timer = self.loop.call_later(self.limits.header_timeout, self._request_timeout)

    def _disarm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_timeout(self) -> None:
        self._request_timer = None
        if self.cycle is None or self.cycle.response_complete:  # no complete request headers yet
            target = self.transport if self._made else self._raw
            if target is not None:
                target.abort()

    def _release(self) -> None:
        self._disarm()
        if self._counted:
            self._counted = False
            opened = self.connections_open
            opened.open -= 1
            left = opened.by_client[self._client] - 1
            if left:
                opened.by_client[self._client] = left
            else:
                del opened.by_client[self._client]


def _host(peer: Any) -> str:
    """The client's address without its port: what its connections are counted by."""
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"


def _address(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "unknown"


def _ssl_reason(exc: ssl.SSLError) -> str:
    # e.g. "HTTP_REQUEST", "UNSUPPORTED_PROTOCOL", "PEER_DID_NOT_RETURN_A_CERTIFICATE": short, fixed words.
    return Redactor().clean(exc.reason or type(exc).__name__, 80)


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """The listening socket, bound now so that a busy port is an error at start, not later."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=backlog, reuse_port=False)


class HttpServer:
    """Serves an ASGI app on a bound socket until `stop()`."""

    def __init__(self, app: Any, sock: socket.socket, tls: TlsContext, limits: ServerLimits):
        protocol = type(
            "ExporterHttpProtocol",
            (_Protocol,),
            {"tls": tls, "limits": limits, "connections_open": _Connections()},
        )
        self.sock = sock
        self.config = uvicorn.Config(
            app,
            http=protocol,
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            backlog=limits.backlog,
            timeout_keep_alive=limits.keep_alive,
            timeout_graceful_shutdown=limits.graceful_seconds,
        )
        self.server = uvicorn.Server(self.config)
        self._ticker: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def start(self) -> None:
        self.config.load()
        # What uvicorn's own serve() does before startup(); serve() itself would take the signals.
        self.server.lifespan = self.config.lifespan_class(self.config)
        await self.server.startup(sockets=[self.sock])
        self._ticker = asyncio.create_task(self.server.main_loop())  # keeps the Date header current

    async def stop(self) -> None:
        """Stop accepting, let requests being answered finish (bounded), close."""
        self.server.should_exit = True
        if self._ticker is not None:
            await self._ticker
        await self.server.shutdown(sockets=[self.sock])
