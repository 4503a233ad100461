"""A small fake upstream on a free loopback port: each path answers what the test says.

For the hostile cases the simulator has no fault for: a test routes a path to a body
(any bytes), a status, or a gate that holds the answer until the test releases it
(or forever), and reads which requests arrived.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from loopback import loopback_server

Answer = tuple[int, bytes] | tuple[int, bytes, dict[str, str]]  # status, body and, maybe, headers


@dataclass
class FakeUpstream:
    url: str = ""
    routes: dict[str, Callable[..., Answer]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)  # paths (with query) in arrival order
    released: threading.Event = field(default_factory=threading.Event)  # opens every `held` route

    def answer(self, path: str, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        """`path` answers `body`: bytes as they are, anything else as JSON."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.routes[path] = lambda: (status, data, headers or {})

    def cycle(self, path: str, answers: list[tuple[int, Any]]) -> None:
        """`path` answers each of `answers` (status, body) in turn, again and again."""
        encoded = [
            (status, body if isinstance(body, bytes) else json.dumps(body).encode())
            for status, body in answers
        ]
        turn = itertools.count()
        self.routes[path] = lambda: encoded[next(turn) % len(encoded)]

    def pages(self, path: str, bodies: list[Any]) -> None:
        """`path` answers `bodies[n]` for `?page=n` (`n` 0 when absent): a cursor-paginated listing."""
        data = [body if isinstance(body, bytes) else json.dumps(body).encode() for body in bodies]
        self.routes[path] = lambda query: (200, data[int(query.get("page", ["0"])[0])])

    def held(self, path: str, body: Any) -> None:
        """`path` answers `body` only once `released` is set (the test's, or the server's stop)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()

        def wait() -> Answer:
            self.released.wait()
            return 200, data

        self.routes[path] = wait

    def count(self, prefix: str) -> int:
        return sum(1 for r in self.requests if r.startswith(prefix))


def _takes_query(route: Callable[..., Answer]) -> bool:
    return route.__code__.co_argcount == 1


@contextlib.contextmanager
def fake_upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            fake.requests.append(self.path)
            parts = urlsplit(self.path)
            route = fake.routes.get(parts.path)
            if route is None:
                answer: Answer = (404, b'{"error": {"type": "not_found_error"}}')
            else:
                answer = route(parse_qs(parts.query)) if _takes_query(route) else route()
            status, body = answer[0], answer[1]
            self.send_response(status)
            for name, header in (answer[2] if len(answer) == 3 else {}).items():
                self.send_header(name, header)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the exporter gave up on this request: fine
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with loopback_server(Handler) as server:
        fake.url = f"http://127.0.0.1:{server.server_port}"
        try:
            yield fake
        finally:
            fake.released.set()  # requests held open end before the server stops
