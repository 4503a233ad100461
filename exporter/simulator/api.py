"""The simulated API's behaviour, independent of any socket: `Simulator.handle()` maps a
request to a `Response`.

It behaves like the reference pages: opaque cursors, `limit` up to a server-side
maximum, both credential kinds checked, `anthropic-version` and the
managed-agents beta required, errors in the API's JSON shape with a
`request-id` header; and it applies each environment's faults.
"""

from __future__ import annotations

import base64
import bisect
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from exporter.simulator.faults import MALFORMED_GZIP, gzip_bomb, nested_json
from exporter.simulator.world import SimEnvironment

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 20
REQUIRED_BETA = "managed-agents-2026-04-01"
API_KEY = "sk-ant-sim-api-key"  # an organisation API key, valid for every environment


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    trickle_bytes_per_second: float = 0.0  # the HTTP layer sends the body this slowly


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
    ):
        self.environments = {e.id: e for e in environments}
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
        if (
            parts[:2] != ["v1", "environments"]
            or len(parts) not in (2, 4, 5)
            or parts[3:4] not in ([], ["work"])
        ):
            return _error(404, "not_found_error", f"no route for {path}", request_id)
        if len(parts) == 5 and parts[4] != "stats":
            return _error(404, "not_found_error", f"no route for {path}", request_id)
        if "anthropic-version" not in headers:
            return _error(400, "invalid_request_error", "anthropic-version: header is required", request_id)
        betas = [b.strip() for b in headers.get("anthropic-beta", "").split(",")]
        if REQUIRED_BETA not in betas:
            return _error(
                400,
                "invalid_request_error",
                f"this endpoint requires the anthropic-beta header {REQUIRED_BETA}",
                request_id,
            )
        limit = _limit(query, self.max_page_size)
        if limit is None:
            return _error(
                400, "invalid_request_error", f"limit: must be between 1 and {self.max_page_size}", request_id
            )
        if len(parts) == 2:
            return self._environments(query, limit, headers, request_id)
        env = self.environments.get(parts[2])
        if not _authorised(env, headers):
            return _error(401, "authentication_error", "invalid authentication credentials", request_id)
        if env is None:
            return _error(404, "not_found_error", f"environment {parts[2]} not found", request_id)
        if len(parts) == 5:
            return self._stats(env, request_id)
        return self._page(env, query.get("page", [None])[0], limit, request_id, headers)

    def _environments(
        self, query: dict[str, list[str]], limit: int, headers: dict[str, str], request_id: str
    ) -> Response:
        """`GET /v1/environments`: an account-level listing, for the organisation's API key only."""
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        if API_KEY not in (headers.get("x-api-key"), bearer):
            return _error(401, "authentication_error", "invalid authentication credentials", request_id)
        if self.environments_status:  # the fault: this listing fails, the work listings do not
            status = self.environments_status
            return _error(status, _ERROR_TYPES.get(status, "api_error"), "simulated failure", request_id)
        archived = query.get("include_archived", ["false"])[0] == "true"
        with self.lock:
            t = self.now()
            envs = sorted(
                (e for e in self.environments.values() if archived or e.archived_at is None),
                key=lambda e: e.id,
            )
        try:
            after = _decode_cursor(query.get("page", [None])[0])[0]
        except ValueError:
            return _error(400, "invalid_request_error", "page: invalid cursor", request_id)
        start = next((n for n, e in enumerate(envs) if e.id > after), len(envs)) if after else 0
        chunk = envs[start : start + limit]
        more = start + limit < len(envs)
        doc = {
            "data": [e.describe(t) for e in chunk],
            "next_page": _encode_cursor(chunk[-1].id, 0) if more else None,
        }
        return Response(200, {"request-id": request_id}, json.dumps(doc).encode())

    def _stats(self, env: SimEnvironment, request_id: str) -> Response:
        with self.lock:
            env.requests += 1
        faults = env.faults
        if faults.latency_seconds:
            self.sleep(faults.latency_seconds)
        failed = self._injected_error(env, request_id)
        if failed is not None:
            return failed
        if faults.stats_status:
            status = faults.stats_status
            return _error(
                status, _ERROR_TYPES.get(status, "api_error"), "simulated stats failure", request_id
            )
        with self.lock:
            t = self.now()
            env.advance(t)
            body = json.dumps(env.queue(t)).encode()
        return Response(200, {"request-id": request_id}, body)

    def _injected_error(self, env: SimEnvironment, request_id: str) -> Response | None:
        faults = env.faults
        for status, rate in faults.error_rates.items():
            if rate and env.fault_rng.random() < rate:
                extra = {}
                if status == "429" and faults.retry_after_seconds is not None:
                    extra["retry-after"] = f"{faults.retry_after_seconds:g}"
                return _error(
                    int(status),
                    _ERROR_TYPES.get(int(status), "api_error"),
                    "simulated failure",
                    request_id,
                    html=faults.html_errors,
                    headers=extra,
                )
        return None

    def _page(
        self, env: SimEnvironment, cursor: str | None, limit: int, request_id: str, headers: dict[str, str]
    ) -> Response:
        with self.lock:
            env.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return self._faulty_page(env, cursor, limit, request_id, headers)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _faulty_page(
        self, env: SimEnvironment, cursor: str | None, limit: int, request_id: str, headers: dict[str, str]
    ) -> Response:
        faults = env.faults
        if faults.latency_seconds:
            self.sleep(faults.latency_seconds)
        if faults.echo_credential:  # a careless server repeating what it was sent
            sent = headers.get("authorization", "").removeprefix("Bearer ") or headers.get("x-api-key", "")
            return _error(401, "authentication_error", f"invalid key {sent}", f"req_{sent}")
        if faults.gzip_bomb_bytes:
            bomb = gzip_bomb(faults.gzip_bomb_bytes)
            return Response(200, {"request-id": request_id, "content-encoding": "gzip"}, bomb)
        if faults.malformed_gzip:
            return Response(200, {"request-id": request_id, "content-encoding": "gzip"}, MALFORMED_GZIP)
        if faults.nesting_depth:
            return Response(200, {"request-id": request_id}, nested_json(faults.nesting_depth))
        failed = self._injected_error(env, request_id)
        if failed is not None:
            return failed
        try:
            after, empties = _decode_cursor(cursor)
        except ValueError:
            return _error(400, "invalid_request_error", "page: invalid cursor", request_id)
        with self.lock:
            t = self.now()
            env.advance(t)
            ids, items, cache = env.listing(t)
            start = bisect.bisect_right(ids, after) if after else 0
            chunk = [env.blob(item, t, cache) for item in items[start : start + limit]]
        if empties < faults.empty_pages and start < len(ids):
            body = b'{"data":[],"next_page":"' + _encode_cursor(after, empties + 1).encode() + b'"}'
            return Response(200, {"request-id": request_id}, body)
        more = start + limit < len(ids)
        next_page: str | None
        if faults.repeat_cursor:
            next_page = _encode_cursor("", 0)  # always the same: a broken server
        elif faults.cursor_bytes:
            next_page = "c" * faults.cursor_bytes
        else:
            next_page = _encode_cursor(ids[start + len(chunk) - 1], 0) if more else None
        body = b'{"data":[' + b",".join(chunk) + b'],"next_page":' + json.dumps(next_page).encode() + b"}"
        if faults.truncated_json and env.fault_rng.random() < faults.truncated_json:
            body = body[: len(body) // 2]
        return Response(200, {"request-id": request_id}, body, faults.trickle_bytes_per_second)


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _limit(query: dict[str, list[str]], maximum: int) -> int | None:
    try:
        limit = int(query.get("limit", [DEFAULT_PAGE_SIZE])[0])
    except ValueError:
        return None
    return limit if 1 <= limit <= maximum else None


def _authorised(env: SimEnvironment | None, headers: dict[str, str]) -> bool:
    """The environment's own key as a bearer token, or the API key (X-Api-Key or bearer)."""
    bearer = headers.get("authorization", "")
    if bearer.startswith("Bearer "):
        token = bearer[7:]
        return token == API_KEY or (env is not None and token == env.key)
    return headers.get("x-api-key") == API_KEY


def _encode_cursor(after: str, empties: int) -> str:
    raw = json.dumps({"a": after, "e": empties}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[str, int]:
    if not cursor:
        return "", 0
    try:
        doc = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return str(doc["a"]), int(doc["e"])
    except (ValueError, KeyError, TypeError):
        raise ValueError("bad cursor") from None


def _error(
    status: int,
    kind: str,
    message: str,
    request_id: str,
    *,
    html: bool = False,
    headers: dict[str, str] | None = None,
) -> Response:
    out = {"request-id": request_id, **(headers or {})}
    if html:
        out["content-type"] = "text/html"
        return Response(status, out, f"<html><body><h1>{status}</h1>{message}</body></html>".encode())
    out["content-type"] = "application/json"
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    return Response(status, out, json.dumps(body).encode())
