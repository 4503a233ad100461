"""The simulated world: environments, their work items' lifecycles, and ground truth.

Each item is born with a schedule (when it is acknowledged, starts, heartbeats,
dies, is asked to stop, stops); its state at any instant is a pure function of
that schedule, so the simulator always knows its own ground truth (`truth()`),
and pausing it freezes every item in place.
"""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from exporter.simulator.faults import Faults

# The simulator keeps its own copy of these API facts, so its ground truth does not
# lean on the exporter's code.
HEARTBEAT_STATES = ("starting", "active", "stopping")
AGED_STATES = ("queued", "starting", "active", "stopping")  # stopped items have no time in state
EVENTS = ("created", "acknowledged", "started", "stop_requested", "stopped")
STEPS = {  # histogram -> (from event, to event)
    "queue_wait": ("created", "acknowledged"),
    "start_duration": ("acknowledged", "started"),
    "run_duration": ("started", "stopped"),
    "stop_duration": ("stop_requested", "stopped"),
}
# The SDK's worker: a 90 s lease, renewed every min(ttl / 2, 30) s.
LEASE_TTL = 90.0
HEARTBEAT_INTERVAL = min(LEASE_TTL / 2, 30.0)
POLLED_WINDOW = 30.0  # work/stats counts workers that polled this recently


@dataclass
class Profile:
    """How work arrives and behaves in a live environment (rates per second, means in seconds)."""

    arrivals_per_second: float
    queue_wait: float = 10.0  # created -> acknowledged
    start_delay: float = 3.0  # acknowledged -> started
    run_time: float = 180.0  # started -> stop requested
    stop_time: float = 5.0  # stop requested -> stopped
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    worker_death_rate: float = 0.0  # chance an item's worker dies while it runs it (heartbeats stop)
    dead_work_timeout: float = 900.0  # a dead worker's item is asked to stop after this
    retention: float = 600.0  # stopped items stay listed this long
    workers: int = 4  # worker processes polling this environment
    workers_send_id: bool = True  # without a worker id the API cannot count workers polling
    worker_restart: float = 120.0  # a dead worker is replaced after this long
    healthcheck_share: float = 0.05  # of items, health checks the queue sends (data.type "healthcheck")


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
    polled: float | None = None  # a worker took it from the queue (before acknowledging it)
    worker: int = 0  # which worker of the environment took it
    kind: str = "session"  # or "healthcheck"

    def at(self, event: str) -> float | None:
        """When `event` (one of EVENTS) happens to this item, if ever."""
        return {
            "created": self.created,
            "acknowledged": self.acknowledged,
            "started": self.started,
            "stop_requested": self.stop_requested,
            "stopped": self.stopped,
        }[event]

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
            "data": {"id": self.session, "type": self.kind},
            "secret": None,  # null on every path but polling, as the API documents
        }


def secret_of(item: Item) -> str:
    """The credential payload an item would carry on the polling path."""
    return f"work-secret-{item.id}"


def _maybe(x: float | None) -> str | None:
    return rfc3339(x) if x is not None else None


def rfc3339(unix: float) -> str:
    """Microsecond RFC 3339 with Z, as the API writes timestamps."""
    whole = math.floor(unix)
    micros = round((unix - whole) * 1e6)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{micros:06d}Z"


class Workers:
    """When each worker of an environment is alive. A worker lives a random while, dies (its items'
    heartbeats stop), and is replaced `restart` seconds later, for ever from `origin`; it polls all
    the time it is alive and takes work only then. So no worker alive (workers_polling 0) means
    nothing is acknowledged, as the NoWorkersPolling runbook says.

    Each worker's life is drawn from a random stream of its own, independent of the items: the
    same seed gives the same lives, whatever was asked first."""

    def __init__(self, count: int, mean_life: float, restart: float, seed: int, origin: float):
        self.count = count
        self.mean_life = mean_life  # math.inf: never dies
        self.restart = restart
        self.rngs = [random.Random(seed * 1000 + w) for w in range(count)]
        self.deaths: list[list[float]] = [[] for _ in range(count)]
        self.born = [origin] * count  # when each worker's current life began (after its last death)

    def _extend(self, w: int, t: float) -> None:
        """Draw worker `w`'s deaths until one after `t`."""
        deaths = self.deaths[w]
        while not deaths or deaths[-1] <= t:
            if self.mean_life == math.inf:
                deaths.append(math.inf)
                return
            death = self.born[w] + self.rngs[w].expovariate(1 / self.mean_life)
            deaths.append(death)
            self.born[w] = death + self.restart

    def revival(self, w: int, t: float) -> float:
        """`t` if worker `w` is alive at `t`, else when it is replaced."""
        self._extend(w, t)
        at = bisect_right(self.deaths[w], t) - 1  # its last death at or before t
        if at >= 0 and t < self.deaths[w][at] + self.restart:
            return self.deaths[w][at] + self.restart
        return t

    def death_after(self, w: int, t: float) -> float:
        """When worker `w`, alive at `t`, dies next (math.inf: never)."""
        self._extend(w, t)
        return self.deaths[w][bisect_right(self.deaths[w], t)]

    def taker(self, t: float, preferred: int) -> tuple[int, float]:
        """The worker that acknowledges work due at `t`, and when: `preferred` if alive, else another
        that is, else the first to be replaced (the work waits in the queue until then)."""
        order = [(preferred + k) % self.count for k in range(self.count)]
        while True:
            for w in order:
                if self.revival(w, t) == t:
                    return w, t
            t = min(self.revival(w, t) for w in order)

    def alive(self, t: float) -> int:
        return sum(1 for w in range(self.count) if self.revival(w, t) == t)


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
        self.requests = 0  # listing and stats requests that reached this environment
        self.archived_at: float | None = None  # archived environments are listed only on request
        self.self_hosted = True  # a cloud environment has no work queue to watch
        self.created_at = 1_767_225_600.0  # 2026-01-01T00:00:00Z
        self._cache: tuple[float, list[str], list[Item], dict[str, bytes]] | None = None
        self._queue: tuple[float, dict[str, Any]] | None = None
        self._workers: Workers | None = None  # made when arrivals begin

    # -- lifecycle -----------------------------------------------------------

    def start(self, t0: float, warmup: float) -> None:
        """Begin arrivals `warmup` seconds before t0, so the first scrape sees history."""
        p = self.profile
        if p is not None and p.arrivals_per_second > 0:
            self._next_arrival = t0 - warmup
            # A life such that an item's worker dies while it runs it with the profile's chance.
            runs = p.start_delay + p.run_time
            life = -runs / math.log(1 - p.worker_death_rate) if 0 < p.worker_death_rate < 1 else math.inf
            if p.worker_death_rate >= 1:
                life = runs / 10
            self._workers = Workers(p.workers, life, p.worker_restart, self.rng.randrange(2**31), t0 - warmup)
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
        assert self._workers is not None  # made by start(), before the first arrival
        # A live worker acknowledges it: with none alive, it waits queued until one is replaced.
        worker, ack = self._workers.taker(created + r.expovariate(1 / p.queue_wait), self._serial % p.workers)
        polled = max(created, ack - r.uniform(0.05, 1.0))  # the worker acknowledges what it polled
        start = ack + r.expovariate(1 / p.start_delay)
        stop_req = start + r.expovariate(1 / p.run_time)
        first_beat = ack + r.uniform(0.2, 1.0) * p.heartbeat_interval
        started: float | None = start
        heartbeat: float | None = first_beat
        dies: float | None = self._workers.death_after(worker, ack)
        if dies is not None and dies >= stop_req:  # its worker outlives it
            dies = None
        if dies is not None:
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
            polled=polled,
            worker=worker,
            kind="healthcheck" if r.random() < p.healthcheck_share else "session",
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
            if self.faults.leak_secrets:
                doc["secret"] = secret_of(item)
            data = cache[item.id] = json.dumps(doc, separators=(",", ":")).encode()
        return data

    def describe(self, t: float) -> dict[str, Any]:
        """The environment as `GET /v1/environments` lists it."""
        config: dict[str, Any] = {"type": "self_hosted"}
        if not self.self_hosted:
            packages = {"apt": [], "cargo": [], "gem": [], "go": [], "npm": [], "pip": [], "type": "packages"}
            config = {"type": "cloud", "networking": {"type": "unrestricted"}, "packages": packages}
        return {
            "id": self.id,
            "type": "environment",
            "name": self.name,
            "description": None,
            "metadata": {},
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.created_at),
            "archived_at": _maybe(self.archived_at),
            "config": config,
            "scope": "organization",
        }

    def workers_polling(self, t: float) -> int | None:
        """Live workers at `t` (a live worker polls all the time); None when they send no id."""
        p = self.profile
        if p is None or not p.workers_send_id:
            return None
        return p.workers if self._workers is None else self._workers.alive(t)

    def queue(self, t: float) -> dict[str, Any]:
        """work/stats at `t`: depth (queued, not polled), pending (polled, not acknowledged), oldest.

        Kept while `t` stands still (a paused simulator), like the listing's JSON.
        """
        if self._queue is not None and self._queue[0] == t:
            return self._queue[1]
        depth = pending = 0
        oldest: float | None = None
        for item in self.items:
            if item.created > t or item.state(t) != "queued":
                continue
            if item.polled is not None and item.polled <= t:
                pending += 1
            else:
                depth += 1
            oldest = item.created if oldest is None else min(oldest, item.created)
        doc = {
            "type": "work_queue_stats",
            "depth": depth,
            "pending": pending,
            "oldest_queued_at": _maybe(oldest),
            "workers_polling": self.workers_polling(t),
        }
        self._queue = (t, doc)
        return doc

    def transitions(self, since: float, until: float) -> dict[str, Any]:
        """Ground truth for the counters: transitions stamped in (since, until], and the steps they end."""
        counts = dict.fromkeys(EVENTS, 0)
        steps: dict[str, list[float]] = {name: [] for name in STEPS}
        for item in self.items:
            for event in EVENTS:
                stamped = item.at(event)
                if stamped is not None and since < stamped <= until:
                    counts[event] += 1
            for name, (begin, end) in STEPS.items():
                began, ended = item.at(begin), item.at(end)
                if began is not None and ended is not None and since < ended <= until:
                    steps[name].append(max(0.0, ended - began))
        return {"transitions": counts, "steps": steps}

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
            "queue": self.queue(t),
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
                polled=clip(ack - 0.5) if ack is not None else None,
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
                worker_restart=300,  # a dead worker stays missing a while: workers_polling drops
            ),
        ),
    ]
