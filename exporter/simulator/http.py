"""The simulated API over HTTP/1.1 with keep-alive, plus control endpoints for tests.

Control endpoints (no auth; bind to loopback): `GET /_sim/truth?environment_id=ID&now=UNIX`,
`GET /_sim/transitions?environment_id=ID&since=UNIX&until=UNIX` (transitions stamped in
(since, until] and the durations of the steps they end),
`GET /_sim/stats` (requests per environment, requests in flight, connections),
`POST /_sim/faults?environment_id=ID` (JSON body, fields of `Faults`),
`POST /_sim/pause`, `POST /_sim/resume`.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from exporter.simulator.api import Response, Simulator
from exporter.simulator.faults import Faults, gzip_bomb


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real API
    # Headers and body leave in separate writes; with Nagle's algorithm on, the body would
    # wait for the client's delayed ACK (40 ms on Linux) on every page, which no real API does.
    disable_nagle_algorithm = True
    simulator: Simulator

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.simulator.lock:
            self.simulator.connections += 1

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/_sim/truth":
            env_id = query.get("environment_id", [""])[0]
            if env_id not in self.simulator.environments:
                return self._send(Response(404, {"content-type": "application/json"}, b'{"error":"unknown"}'))
            now = float(query["now"][0]) if "now" in query else None
            body = json.dumps(self.simulator.truth(env_id, now)).encode()
            return self._send(Response(200, {"content-type": "application/json"}, body))
        if url.path == "/_sim/transitions":
            env_id = query.get("environment_id", [""])[0]
            if env_id not in self.simulator.environments:
                return self._send(Response(404, {"content-type": "application/json"}, b'{"error":"unknown"}'))
            since, until = float(query["since"][0]), float(query["until"][0])
            body = json.dumps(self.simulator.transitions(env_id, since, until)).encode()
            return self._send(Response(200, {"content-type": "application/json"}, body))
        if url.path == "/_sim/stats":
            body = json.dumps(self.simulator.stats()).encode()
            return self._send(Response(200, {"content-type": "application/json"}, body))
        headers = {k.lower(): v for k, v in self.headers.items()}
        response = self.simulator.handle(url.path, query, headers)
        response.headers.setdefault("content-type", "application/json")
        self._send(response)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        sim = self.simulator
        if url.path == "/_sim/pause":
            return self._send(Response(200, {}, json.dumps({"paused_at": sim.pause()}).encode()))
        if url.path == "/_sim/resume":
            sim.resume()
            return self._send(Response(200, {}, b"{}"))
        if url.path == "/_sim/faults":
            env_id = parse_qs(url.query).get("environment_id", [""])[0]
            env = sim.environments.get(env_id)
            try:
                faults = Faults.from_dict(json.loads(raw or b"{}"))
            except (ValueError, TypeError) as exc:
                return self._send(Response(400, {}, str(exc).encode()))
            if env is None:
                return self._send(Response(404, {}, b"unknown environment"))
            if faults.gzip_bomb_bytes:
                gzip_bomb(faults.gzip_bomb_bytes)  # made (and cached) now, not while a client waits
            env.faults = faults
            return self._send(Response(200, {}, json.dumps(asdict(faults)).encode()))
        self._send(Response(404, {}, b""))

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for k, v in response.headers.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(response.body)))
        self.end_headers()
        if not response.trickle_bytes_per_second:
            self.wfile.write(response.body)
            return
        pause = 1 / response.trickle_bytes_per_second
        try:
            for i in range(len(response.body)):
                self.wfile.write(response.body[i : i + 1])
                time.sleep(pause)  # the fault itself: a server that sends one byte at a time
        except OSError:  # the client gave up, as it should
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a hundred environments connecting at once
    # overflowed it, and the connections past it waited for SYN retransmits (1 s, 3 s).
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):  # a client that hung up: what clients do
            return
        super().handle_error(request, client_address)


def serve(simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Serve on a daemon thread; port 0 picks a free one (see `server.server_port`)."""
    handler = type("Handler", (_Handler,), {"simulator": simulator})
    server = _Server((host, port), handler)
    threading.Thread(target=server.serve_forever, name="simulator", daemon=True).start()
    return server
