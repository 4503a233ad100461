"""The simulated API's behaviour, independent of any socket: `Simulator.handle()` maps a
request to a `Response`.

It behaves like the reference pages: opaque cursors, `limit` up to a server-side
maximum, both credential kinds checked, `anthropic-version` and the
managed-agents beta required, errors in the API's JSON shape with a
`request-id` header; and it applies each environment's faults. What each path answers
is its `Route` (`routes.py`): the real API's by default, and any other an endpoint
brings (`routes=`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from exporter.simulator.routes import (
    DEFAULT_ROUTES,
    Request,
    Response,
    Route,
    authorised,
    error,
    page_size,
)
from exporter.simulator.world import SimEnvironment

MAX_PAGE_SIZE = 1000
REQUIRED_BETA = "managed-agents-2026-04-01"


class Simulator:
    """The API's behaviour, independent of any socket: `handle()` maps a request to a response."""

    def __init__(
        self,
        environments: Iterable[SimEnvironment],
        *,
        clock: Callable[[], float] = time.time,
        max_page_size: int = MAX_PAGE_SIZE,
        warmup: float = 1800.0,
        sleep: Callable[[float], None] = time.sleep,
        routes: Iterable[Route] = DEFAULT_ROUTES,
    ):
        self.environments = {e.id: e for e in environments}
        self.routes = [(route.pattern.strip("/").split("/"), route.answer) for route in routes]
        self.clock = clock
        self.sleep = sleep
        self.max_page_size = max_page_size
        self.lock = threading.Lock()
        self.paused_at: float | None = None
        self.connections = 0  # TCP connections accepted
        self.in_flight = 0
        self.max_in_flight = 0  # the most listing requests served at the same time
        self.environments_status = 0  # GET /v1/environments answers this error status (0: it works)
        t0 = clock()
        for env in self.environments.values():
            env.start(t0, warmup)

    def now(self) -> float:
        return self.paused_at if self.paused_at is not None else self.clock()

    def pause(self) -> float:
        with self.lock:
            self.paused_at = self.clock()
            for env in self.environments.values():
                env.advance(self.paused_at)
            return self.paused_at

    def resume(self) -> None:
        with self.lock:
            self.paused_at = None

    def stats(self) -> dict[str, Any]:
        """What the API has served so far: for tests and benchmarks that count requests."""
        with self.lock:
            return {
                "requests": {env.id: env.requests for env in self.environments.values()},
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "connections": self.connections,
            }

    def transitions(self, environment_id: str, since: float, until: float) -> dict[str, Any]:
        with self.lock:
            env = self.environments[environment_id]
            env.advance(self.now())
            return env.transitions(since, until)

    def truth(self, environment_id: str, now: float | None = None) -> dict[str, Any]:
        with self.lock:
            t = self.now()
            env = self.environments[environment_id]
            env.advance(t)
            return env.truth(t, t if now is None else now)

    def handle(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        """One GET request; `headers` keys are lower-case."""
        request_id = f"req_{uuid.uuid4().hex[:24]}"
        parts = path.strip("/").split("/")
        found = next(((pattern, answer) for pattern, answer in self.routes if _matches(pattern, parts)), None)
        if found is None:
            return error(404, "not_found_error", f"no route for {path}", request_id)
        if "anthropic-version" not in headers:
            return error(400, "invalid_request_error", "anthropic-version: header is required", request_id)
        betas = [b.strip() for b in headers.get("anthropic-beta", "").split(",")]
        if REQUIRED_BETA not in betas:
            return error(
                400,
                "invalid_request_error",
                f"this endpoint requires the anthropic-beta header {REQUIRED_BETA}",
                request_id,
            )
        limit = page_size(query, self.max_page_size)
        if limit is None:
            return error(
                400, "invalid_request_error", f"limit: must be between 1 and {self.max_page_size}", request_id
            )
        pattern, answer = found
        request = Request(query, headers, request_id, limit)
        if ENVIRONMENT_ID not in pattern:  # an account's route: it checks its own key
            return answer(self, None, request)
        env_id = parts[pattern.index(ENVIRONMENT_ID)]
        env = self.environments.get(env_id)
        if not authorised(env, headers):
            return error(401, "authentication_error", "invalid authentication credentials", request_id)
        if env is None:
            return error(404, "not_found_error", f"environment {env_id} not found", request_id)
        return answer(self, env, request)


ENVIRONMENT_ID = "{environment_id}"


def _matches(pattern: list[str], parts: list[str]) -> bool:
    return len(pattern) == len(parts) and all(
        p in (ENVIRONMENT_ID, q) for p, q in zip(pattern, parts, strict=True)
    )
