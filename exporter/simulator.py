"""A simulated Managed Agents API: `GET /v1/environments/{id}/work` and nothing else.

It behaves like the reference pages: opaque cursors, `limit` up to a server-side
maximum, both credential kinds checked, `anthropic-version` and the
managed-agents beta required, errors in the API's JSON shape with a
`request-id` header. `--demo`, the end-to-end tests and the benchmark all run
against it.

Work lives a real lifecycle. Each item is born with a schedule (when it is
acknowledged, starts, heartbeats, dies, is asked to stop, stops); its state at
any instant is a pure function of that schedule, so the simulator always knows
its own ground truth (`truth()`), and pausing it freezes every item in place.

Faults are switched on per environment: latency per page, error rates by
status, HTML error pages, truncated JSON, repeated cursors, empty pages.

Control endpoints for tests and benchmarks (no auth; bind to loopback):
`GET /_sim/truth?environment_id=ID&now=UNIX`, `POST /_sim/faults?environment_id=ID`
(JSON body, fields of `Faults`), `POST /_sim/pause`, `POST /_sim/resume`.

Run standalone: `python -m exporter.simulator --port 8080`.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import json
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 20
REQUIRED_BETA = "managed-agents-2026-04-01"
API_KEY = "sk-ant-sim-api-key"  # an organisation API key, valid for every environment
# The simulator keeps its own copy of these API facts, so its ground truth does not
# lean on the exporter's code.
HEARTBEAT_STATES = ("starting", "active", "stopping")
AGED_STATES = ("queued", "starting", "active", "stopping")  # stopped items have no time in state


@dataclass
class Faults:
    """What can go wrong in one environment; all off by default."""

    latency_seconds: float = 0.0  # added to every page
    error_rates: dict[str, float] = field(default_factory=dict)  # {"429": 0.5}: chance per request
    retry_after_seconds: float | None = None  # sent with 429s
    html_errors: bool = False  # error responses as an HTML page, as a proxy would send
    truncated_json: float = 0.0  # chance a 200 body is cut in half
    repeat_cursor: bool = False  # next_page never changes
    empty_pages: int = 0  # empty pages served before each page of items

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Faults:
        names = {f.name for f in fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(sorted(unknown))}")
        return cls(**raw)


@dataclass
class Profile:
    """How work arrives and behaves in a live environment (rates per second, means in seconds)."""

    arrivals_per_second: float
    queue_wait: float = 10.0  # created -> acknowledged
    start_delay: float = 3.0  # acknowledged -> started
    run_time: float = 180.0  # started -> stop requested
    stop_time: float = 5.0  # stop requested -> stopped
    heartbeat_interval: float = 5.0
    worker_death_rate: float = 0.0  # chance a worker dies mid-way (its heartbeats stop)
    dead_work_timeout: float = 900.0  # a dead worker's item is asked to stop after this
    retention: float = 600.0  # stopped items stay listed this long


@dataclass
class Item:
    """One work item's whole schedule; `None` means it never happens."""

    id: str
    session: str
    created: float
    acknowledged: float | None
    started: float | None
    stop_requested: float | None
    stopped: float | None
    first_heartbeat: float | None
    heartbeat_interval: float
    dies: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def state(self, t: float) -> str:
        if self.acknowledged is None or t < self.acknowledged:
            return "queued"
        if self.stop_requested is not None and t >= self.stop_requested:
            return "stopped" if self.stopped is not None and t >= self.stopped else "stopping"
        if self.started is None or t < self.started:
            return "starting"
        return "active"

    def entered(self, state: str) -> float | None:
        """When the item entered `state`, for the states that have an age."""
        return {
            "queued": self.created,
            "starting": self.acknowledged,
            "active": self.started,
            "stopping": self.stop_requested,
        }.get(state)

    def latest_heartbeat(self, t: float) -> float | None:
        if self.first_heartbeat is None:
            return None
        end = min(x for x in (t, self.dies, self.stopped) if x is not None)
        if end < self.first_heartbeat:
            return None
        beats = math.floor((end - self.first_heartbeat) / self.heartbeat_interval)
        return self.first_heartbeat + beats * self.heartbeat_interval

    def visible(self, t: float) -> dict[str, Any]:
        """The item as the API lists it at instant `t`."""

        def at(x: float | None) -> str | None:
            return rfc3339(x) if x is not None and x <= t else None

        state = self.state(t)
        return {
            "id": self.id,
            "type": "work",
            "environment_id": "",
            "state": state,
            "created_at": rfc3339(self.created),
            "acknowledged_at": at(self.acknowledged),
            "started_at": at(self.started),
            "latest_heartbeat_at": _maybe(self.latest_heartbeat(t)),
            "stop_requested_at": at(self.stop_requested),
            "stopped_at": at(self.stopped),
            "metadata": self.metadata,
            "data": {"id": self.session, "type": "session"},
            "secret": None,  # null on every path but polling, as the API documents
        }


def _maybe(x: float | None) -> str | None:
    return rfc3339(x) if x is not None else None


def rfc3339(unix: float) -> str:
    """Microsecond RFC 3339 with Z, as the API writes timestamps."""
    whole = math.floor(unix)
    micros = round((unix - whole) * 1e6)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{micros:06d}Z"


class SimEnvironment:
    """One environment: its items, credentials, faults and (if live) its lifecycle."""

    def __init__(
        self,
        id: str,
        name: str,
        *,
        key: str | None = None,
        profile: Profile | None = None,
        items: Iterable[Item] = (),
        seed: int = 0,
        faults: Faults | None = None,
    ):
        self.id = id
        self.name = name
        self.key = key or f"sk-ant-env-{id}"
        self.profile = profile
        self.items: list[Item] = sorted(items, key=lambda i: i.id)
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.fault_rng = random.Random(seed + 1)
        self._next_arrival: float | None = None
        self._serial = 0
        self.requests = 0  # listing requests that reached this environment
        self._cache: tuple[float, list[str], list[Item], dict[str, bytes]] | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self, t0: float, warmup: float) -> None:
        """Begin arrivals `warmup` seconds before t0, so the first scrape sees history."""
        if self.profile is not None and self.profile.arrivals_per_second > 0:
            self._next_arrival = t0 - warmup
            self.advance(t0)

    def advance(self, t: float) -> None:
        p = self.profile
        if p is None or self._next_arrival is None:
            return
        while self._next_arrival <= t:
            self.items.append(self._new_item(self._next_arrival, p))
            self._next_arrival += self.rng.expovariate(p.arrivals_per_second)
        cutoff = t - p.retention
        if self.items and self.items[0].stopped is not None and self.items[0].stopped < cutoff:
            self.items = [i for i in self.items if i.stopped is None or i.stopped >= cutoff]

    def _new_item(self, created: float, p: Profile) -> Item:
        r = self.rng
        self._serial += 1
        ack = created + r.expovariate(1 / p.queue_wait)
        start = ack + r.expovariate(1 / p.start_delay)
        stop_req = start + r.expovariate(1 / p.run_time)
        first_beat = ack + r.uniform(0.2, 1.0) * p.heartbeat_interval
        started: float | None = start
        heartbeat: float | None = first_beat
        dies = None
        if r.random() < p.worker_death_rate:
            dies = ack + r.uniform(0, p.start_delay + p.run_time)
            if dies < first_beat:  # died before its first heartbeat: stuck starting, never seen
                heartbeat, started = None, None
            elif dies < start:
                started = None
            stop_req = dies + p.dead_work_timeout
        stopped = stop_req + r.expovariate(1 / p.stop_time)
        return Item(
            id=f"work_{self.id[-6:]}{self._serial:010d}",
            session=f"session_{uuid.uuid4().hex[:24]}",
            created=created,
            acknowledged=ack,
            started=started,
            stop_requested=stop_req,
            stopped=stopped,
            first_heartbeat=heartbeat,
            heartbeat_interval=p.heartbeat_interval,
            dies=dies,
            metadata={"team": r.choice(["search", "billing", "infra"])},
        )

    # -- listing ---------------------------------------------------------------

    def listing(self, t: float) -> tuple[list[str], list[Item], dict[str, bytes]]:
        """Ids and items listed at `t`, and a JSON cache that lives while `t` stands still."""
        if self._cache is None or self._cache[0] != t:
            visible = [i for i in self.items if i.created <= t]
            self._cache = (t, [i.id for i in visible], visible, {})
        return self._cache[1], self._cache[2], self._cache[3]

    def blob(self, item: Item, t: float, cache: dict[str, bytes]) -> bytes:
        data = cache.get(item.id)
        if data is None:
            doc = item.visible(t)
            doc["environment_id"] = self.id
            data = cache[item.id] = json.dumps(doc, separators=(",", ":")).encode()
        return data

    def truth(self, t: float, now: float) -> dict[str, Any]:
        """What the API shows at `t`, with ages measured at `now`: the exporter's ground truth."""
        counts = dict.fromkeys(("queued", "starting", "active", "stopping", "stopped"), 0)
        heartbeat_ages: dict[str, list[float]] = {s: [] for s in HEARTBEAT_STATES}
        without = dict.fromkeys(HEARTBEAT_STATES, 0)
        state_ages: dict[str, list[float]] = {s: [] for s in AGED_STATES}
        for item in self.items:
            if item.created > t:
                continue
            state = item.state(t)
            counts[state] += 1
            since = item.entered(state)
            if since is not None:
                state_ages[state].append(max(0.0, now - since))
            if state in HEARTBEAT_STATES:
                beat = item.latest_heartbeat(t)
                if beat is None:
                    without[state] += 1
                else:
                    heartbeat_ages[state].append(max(0.0, now - beat))
        return {
            "items": counts,
            "heartbeat_ages": heartbeat_ages,
            "without_heartbeat": without,
            "state_ages": state_ages,
        }


def static_items(count: int, now: float, seed: int = 0) -> list[Item]:
    """A fixed population (for tests and the benchmark): a mix of every state."""
    r = random.Random(seed)
    items = []
    for n in range(count):
        created = now - r.uniform(60, 7200)
        kind = n % 10
        # 20 % queued, 20 % starting (half of them without a heartbeat), 40 % active,
        # 10 % stopping, 10 % stopped; nothing later than `now`.
        ack = created + r.uniform(1, 30) if kind >= 2 else None
        first = ack + 2 if ack is not None and kind != 2 else None
        start = ack + r.uniform(1, 10) if ack is not None and kind >= 4 else None
        stop_req = start + r.uniform(10, 40) if start is not None and kind >= 8 else None
        stopped = stop_req + r.uniform(1, 5) if stop_req is not None and kind == 9 else None

        def clip(x: float | None) -> float | None:
            return None if x is None else min(x, now)

        items.append(
            Item(
                id=f"work_{n:012d}",
                session=f"session_{n:012d}",
                created=created,
                acknowledged=clip(ack),
                started=clip(start),
                stop_requested=clip(stop_req),
                stopped=clip(stopped),
                first_heartbeat=clip(first),
                heartbeat_interval=5.0,
                metadata={"n": str(n)},
            )
        )
    return items


def demo_environments() -> list[SimEnvironment]:
    """Three environments of different character, for --demo."""
    return [
        # Busy enough to be rate-limited now and then: the exporter retries those 429s.
        SimEnvironment(
            "env_01demoBusySandboxes00",
            "busy-sandboxes",
            seed=1,
            profile=Profile(arrivals_per_second=2.0, queue_wait=20, run_time=120),
            faults=Faults(error_rates={"429": 0.05}, retry_after_seconds=0.05),
        ),
        SimEnvironment(
            "env_01demoIdleSandboxes00",
            "idle-sandboxes",
            seed=2,
            profile=Profile(arrivals_per_second=0.02, queue_wait=3, run_time=300),
        ),
        SimEnvironment(
            "env_01demoDyingWorkers000",
            "dying-workers",
            seed=3,
            profile=Profile(
                arrivals_per_second=0.3,
                queue_wait=60,
                run_time=240,
                worker_death_rate=0.35,
                dead_work_timeout=1200,
            ),
        ),
    ]


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

    def truth(self, environment_id: str, now: float | None = None) -> dict[str, Any]:
        with self.lock:
            t = self.now()
            env = self.environments[environment_id]
            env.advance(t)
            return env.truth(t, t if now is None else now)

    def handle(
        self, path: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        """One GET request; `headers` keys are lower-case."""
        request_id = f"req_{uuid.uuid4().hex[:24]}"
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["v1", "environments"] or parts[3] != "work":
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
        env = self.environments.get(parts[2])
        if not _authorised(env, headers):
            return _error(401, "authentication_error", "invalid authentication credentials", request_id)
        if env is None:
            return _error(404, "not_found_error", f"environment {parts[2]} not found", request_id)
        try:
            limit = int(query.get("limit", [DEFAULT_PAGE_SIZE])[0])
        except ValueError:
            limit = 0
        if not 1 <= limit <= self.max_page_size:
            return _error(
                400, "invalid_request_error", f"limit: must be between 1 and {self.max_page_size}", request_id
            )
        return self._page(env, query.get("page", [None])[0], limit, request_id)

    def _page(
        self, env: SimEnvironment, cursor: str | None, limit: int, request_id: str
    ) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            env.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return self._faulty_page(env, cursor, limit, request_id)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _faulty_page(
        self, env: SimEnvironment, cursor: str | None, limit: int, request_id: str
    ) -> tuple[int, dict[str, str], bytes]:
        faults = env.faults
        if faults.latency_seconds:
            self.sleep(faults.latency_seconds)
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
            return 200, {"request-id": request_id}, body
        more = start + limit < len(ids)
        next_page: str | None
        if faults.repeat_cursor:
            next_page = _encode_cursor("", 0)  # always the same: a broken server
        else:
            next_page = _encode_cursor(ids[start + len(chunk) - 1], 0) if more else None
        body = b'{"data":[' + b",".join(chunk) + b'],"next_page":' + json.dumps(next_page).encode() + b"}"
        if faults.truncated_json and env.fault_rng.random() < faults.truncated_json:
            body = body[: len(body) // 2]
        return 200, {"request-id": request_id}, body


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
) -> tuple[int, dict[str, str], bytes]:
    out = {"request-id": request_id, **(headers or {})}
    if html:
        out["content-type"] = "text/html"
        return status, out, f"<html><body><h1>{status}</h1>{message}</body></html>".encode()
    out["content-type"] = "application/json"
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    return status, out, json.dumps(body).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real API
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
                return self._send(404, {"content-type": "application/json"}, b'{"error":"unknown"}')
            now = float(query["now"][0]) if "now" in query else None
            body = json.dumps(self.simulator.truth(env_id, now)).encode()
            return self._send(200, {"content-type": "application/json"}, body)
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, out, body = self.simulator.handle(url.path, query, headers)
        out.setdefault("content-type", "application/json")
        self._send(status, out, body)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        sim = self.simulator
        if url.path == "/_sim/pause":
            return self._send(200, {}, json.dumps({"paused_at": sim.pause()}).encode())
        if url.path == "/_sim/resume":
            sim.resume()
            return self._send(200, {}, b"{}")
        if url.path == "/_sim/faults":
            env_id = parse_qs(url.query).get("environment_id", [""])[0]
            env = sim.environments.get(env_id)
            try:
                faults = Faults.from_dict(json.loads(raw or b"{}"))
            except (ValueError, TypeError) as exc:
                return self._send(400, {}, str(exc).encode())
            if env is None:
                return self._send(404, {}, b"unknown environment")
            env.faults = faults
            return self._send(200, {}, json.dumps(asdict(faults)).encode())
        self._send(404, {}, b"")

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Serve on a daemon thread; port 0 picks a free one (see `server.server_port`)."""
    handler = type("Handler", (_Handler,), {"simulator": simulator})
    server = _Server((host, port), handler)
    threading.Thread(target=server.serve_forever, name="simulator", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m exporter.simulator", description="A simulated Managed Agents work API on loopback."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument(
        "--static",
        metavar="N",
        type=int,
        nargs="*",
        help="instead of the demo environments, static ones with N items each",
    )
    p.add_argument("--max-page-size", type=int, default=MAX_PAGE_SIZE)
    args = p.parse_args(argv)
    if args.static:
        now = time.time()
        envs = [
            SimEnvironment(f"env_static{n:04d}", f"static-{n}", items=static_items(count, now, seed=n))
            for n, count in enumerate(args.static)
        ]
    else:
        envs = demo_environments()
    sim = Simulator(envs, max_page_size=args.max_page_size)
    server = serve(sim, args.host, args.port)
    print(
        json.dumps(
            {
                "url": f"http://{args.host}:{server.server_port}",
                "api_key": API_KEY,
                "environments": {e.id: e.key for e in envs},
            }
        ),
        flush=True,
    )
    threading.Event().wait()


if __name__ == "__main__":
    main()
