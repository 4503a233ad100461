"""The simulated API's routes: what each endpoint answers, and how its faults show.

Each route is a `Route`: its path pattern (the simulator's own copy of the real API's,
so its ground truth does not lean on the exporter's code) and its answer. `DEFAULT_ROUTES`
are the real API's three; the exporter's endpoint declarations name the route of theirs,
and a new endpoint brings its own (`Simulator(routes=...)`).
"""

from __future__ import annotations

import base64
import bisect
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from exporter.simulator.faults import MALFORMED_GZIP, gzip_bomb, nested_json
from exporter.simulator.world import SimEnvironment

if TYPE_CHECKING:
    from exporter.simulator.api import Simulator

DEFAULT_PAGE_SIZE = 20
API_KEY = "sk-ant-sim-api-key"  # an organisation API key, valid for every environment


class Response(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes
    trickle_bytes_per_second: float = 0.0  # the HTTP layer sends the body this slowly


class Request(NamedTuple):
    """What a route is asked: the query, the headers (lower-case), the request id, the page size."""

    query: dict[str, list[str]]
    headers: dict[str, str]
    request_id: str
    limit: int


# An environment's route answers for that environment (after the key was checked); an account's,
# with `None` for it, checks its own key.
Answer = Callable[["Simulator", SimEnvironment | None, Request], Response]


class Route(NamedTuple):
    pattern: str  # "/v1/environments/{environment_id}/work": a segment in braces is the environment id
    answer: Answer


def environments(sim: Simulator, _: SimEnvironment | None, request: Request) -> Response:
    """`GET /v1/environments`: an account-level listing, for the organisation's API key only."""
    query, headers, request_id, limit = request
    bearer = headers.get("authorization", "").removeprefix("Bearer ")
    if API_KEY not in (headers.get("x-api-key"), bearer):
        return error(401, "authentication_error", "invalid authentication credentials", request_id)
    if sim.environments_status:  # the fault: this listing fails, the work listings do not
        status = sim.environments_status
        return error(status, _ERROR_TYPES.get(status, "api_error"), "simulated failure", request_id)
    archived = query.get("include_archived", ["false"])[0] == "true"
    with sim.lock:
        t = sim.now()
        envs = sorted(
            (e for e in sim.environments.values() if archived or e.archived_at is None),
            key=lambda e: e.id,
        )
    try:
        after = _decode_cursor(query.get("page", [None])[0])[0]
    except ValueError:
        return error(400, "invalid_request_error", "page: invalid cursor", request_id)
    start = next((n for n, e in enumerate(envs) if e.id > after), len(envs)) if after else 0
    chunk = envs[start : start + limit]
    more = start + limit < len(envs)
    doc = {
        "data": [e.describe(t) for e in chunk],
        "next_page": _encode_cursor(chunk[-1].id, 0) if more else None,
    }
    return Response(200, {"request-id": request_id}, json.dumps(doc).encode())


def work_stats(sim: Simulator, env: SimEnvironment | None, request: Request) -> Response:
    """`GET /v1/environments/{id}/work/stats`: the queue, as the world has it now."""
    assert env is not None
    request_id = request.request_id
    with sim.lock:
        env.requests += 1
    faults = env.faults
    if faults.latency_seconds:
        sim.sleep(faults.latency_seconds)
    failed = _injected_error(sim, env, request_id)
    if failed is not None:
        return failed
    if faults.stats_status:
        status = faults.stats_status
        return error(status, _ERROR_TYPES.get(status, "api_error"), "simulated stats failure", request_id)
    with sim.lock:
        t = sim.now()
        env.advance(t)
        body = json.dumps(env.queue(t)).encode()
    return Response(200, {"request-id": request_id}, body)


def _injected_error(sim: Simulator, env: SimEnvironment, request_id: str) -> Response | None:
    faults = env.faults
    for status, rate in faults.error_rates.items():
        if rate and env.fault_rng.random() < rate:
            extra = {}
            if status == "429" and faults.retry_after_seconds is not None:
                extra["retry-after"] = f"{faults.retry_after_seconds:g}"
            return error(
                int(status),
                _ERROR_TYPES.get(int(status), "api_error"),
                "simulated failure",
                request_id,
                html=faults.html_errors,
                headers=extra,
            )
    return None


def work_page(sim: Simulator, env: SimEnvironment | None, request: Request) -> Response:
    """`GET /v1/environments/{id}/work`: a page of its items, with its faults."""
    assert env is not None
    cursor, limit = request.query.get("page", [None])[0], request.limit
    request_id, headers = request.request_id, request.headers
    with sim.lock:
        env.requests += 1
        sim.in_flight += 1
        sim.max_in_flight = max(sim.max_in_flight, sim.in_flight)
    try:
        return _faulty_page(sim, env, cursor, limit, request_id, headers)
    finally:
        with sim.lock:
            sim.in_flight -= 1


def _faulty_page(
    sim: Simulator,
    env: SimEnvironment,
    cursor: str | None,
    limit: int,
    request_id: str,
    headers: dict[str, str],
) -> Response:
    faults = env.faults
    if faults.latency_seconds:
        sim.sleep(faults.latency_seconds)
    if faults.echo_credential:  # a careless server repeating what it was sent
        sent = headers.get("authorization", "").removeprefix("Bearer ") or headers.get("x-api-key", "")
        return error(401, "authentication_error", f"invalid key {sent}", f"req_{sent}")
    if faults.gzip_bomb_bytes:
        bomb = gzip_bomb(faults.gzip_bomb_bytes)
        return Response(200, {"request-id": request_id, "content-encoding": "gzip"}, bomb)
    if faults.malformed_gzip:
        return Response(200, {"request-id": request_id, "content-encoding": "gzip"}, MALFORMED_GZIP)
    if faults.nesting_depth:
        return Response(200, {"request-id": request_id}, nested_json(faults.nesting_depth))
    failed = _injected_error(sim, env, request_id)
    if failed is not None:
        return failed
    try:
        after, empties = _decode_cursor(cursor)
    except ValueError:
        return error(400, "invalid_request_error", "page: invalid cursor", request_id)
    with sim.lock:
        t = sim.now()
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


def page_size(query: dict[str, list[str]], maximum: int) -> int | None:
    try:
        limit = int(query.get("limit", [DEFAULT_PAGE_SIZE])[0])
    except ValueError:
        return None
    return limit if 1 <= limit <= maximum else None


def authorised(env: SimEnvironment | None, headers: dict[str, str]) -> bool:
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


def error(
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


WORK = Route("/v1/environments/{environment_id}/work", work_page)
WORK_STATS = Route("/v1/environments/{environment_id}/work/stats", work_stats)
ENVIRONMENTS = Route("/v1/environments", environments)
DEFAULT_ROUTES = (WORK, WORK_STATS, ENVIRONMENTS)
