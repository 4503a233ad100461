"""The HTTP side: routes, the scrape deadline, basic auth and TLS.

Exposition itself (text or OpenMetrics by `Accept`, gzip by `Accept-Encoding`,
`name[]` filtering) is prometheus-client's own WSGI app, run per scrape over a
registry that holds that scrape's WorkCollector and the exporter's long-lived
collectors.
"""

from __future__ import annotations

import html
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs, urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from .collector import WorkCollector
from .config import Config, Environment
from .scrape import Scraper
from .web import WebConfig

log = logging.getLogger("exporter.server")

SCRAPE_TIMEOUT_HEADER = "HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"
MIN_BUDGET_SECONDS = 0.1

StartResponse = Callable[..., Any]


class ExporterApp:
    """The WSGI application behind every endpoint."""

    def __init__(
        self, config: Config, scraper: Scraper, registry: CollectorRegistry, web: WebConfig | None = None
    ):
        self.config = config
        self.scraper = scraper
        self.registry = registry  # build info, process metrics: shown on /metrics only
        self.auth = web.basic_auth if web else None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self.auth is not None and not self.auth.allows(environ.get("HTTP_AUTHORIZATION")):
            return _reply(
                start_response,
                "401 Unauthorized",
                "Unauthorized\n",
                [("WWW-Authenticate", 'Basic realm="anthropic-work-exporter"')],
            )
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return self.metrics(environ, start_response, self.config.environments, self.registry)
        if path == "/probe":
            return self.probe(environ, start_response)
        if path == "/-/healthy":
            return _reply(start_response, "200 OK", "Healthy\n")
        if path == "/-/ready":
            return _reply(start_response, "200 OK", "Ready\n")
        if path == "/":
            return _reply(
                start_response, "200 OK", self.landing_page(), [("Content-Type", "text/html; charset=utf-8")]
            )
        return _reply(start_response, "404 Not Found", "Not found. Try /metrics or /probe.\n")

    def probe(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        ids = parse_qs(environ.get("QUERY_STRING", "")).get("environment_id", [])
        if len(ids) != 1 or not ids[0]:
            return _reply(
                start_response,
                "400 Bad Request",
                "400: give exactly one environment_id, e.g. /probe?environment_id=env_...\n",
            )
        env = self.config.environment(ids[0])
        if env is None:
            return _reply(
                start_response,
                "400 Bad Request",
                f"400: environment_id {ids[0]!r} is not in this exporter's config; "
                "only configured environments can be probed\n",
            )
        return self.metrics(environ, start_response, [env], None)

    def metrics(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        environments: Iterable[Environment],
        base: CollectorRegistry | None,
    ) -> Iterable[bytes]:
        deadline = self.scraper.client.clock() + self.budget(environ.get(SCRAPE_TIMEOUT_HEADER))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(
            WorkCollector(self.scraper, list(environments), deadline, self.scraper.client.requests)
        )
        if base is not None:
            registry.register(base)
        # prometheus-client reads name[] from the query string and ignores the rest (environment_id).
        return make_wsgi_app(registry)(environ, start_response)

    def budget(self, header: str | None) -> float:
        """Seconds this scrape may take: Prometheus' timeout less our offset, or the default."""
        scrape = self.config.scrape
        try:
            timeout = float(header) if header else None
        except ValueError:
            timeout = None
        if timeout is None or not timeout > 0:
            return scrape.timeout_seconds
        return max(timeout - scrape.timeout_offset_seconds, MIN_BUDGET_SECONDS)

    def landing_page(self) -> str:
        links = "".join(
            f'<li><a href="/probe?{html.escape(urlencode({"environment_id": e.id}))}">/probe?environment_id='
            f"{html.escape(e.id)}</a> ({html.escape(e.name)})</li>"
            for e in self.config.environments
        )
        return (
            "<!doctype html><html><head><title>anthropic-work-exporter</title></head><body>"
            "<h1>anthropic-work-exporter</h1><p>Work items of Anthropic Managed Agents "
            "self-hosted environments, for Prometheus.</p><ul>"
            '<li><a href="/metrics">/metrics</a>: every configured environment</li>'
            f"{links}"
            '<li><a href="/-/healthy">/-/healthy</a>, <a href="/-/ready">/-/ready</a></li>'
            "</ul></body></html>\n"
        )


def _reply(
    start_response: StartResponse, status: str, body: str, headers: list[tuple[str, str]] | None = None
) -> list[bytes]:
    data = body.encode()
    headers = headers or [("Content-Type", "text/plain; charset=utf-8")]
    start_response(status, [*headers, ("Content-Length", str(len(data)))])
    return [data]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """Access logs go to the debug log, not stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("request", extra={"client": self.address_string(), "line": format % args})


def serve(app: ExporterApp, host: str, port: int, web: WebConfig | None = None) -> WSGIServer:
    """Bind now (errors surface here) and serve on a daemon thread; return the server."""
    server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
    server = make_server(host.strip("[]"), port, app, server_class=server_class, handler_class=_QuietHandler)
    if web is not None and web.ssl_context is not None:
        # Handshake lazily, in the request's own thread: a slow client cannot stall accept().
        server.socket = web.ssl_context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return server
