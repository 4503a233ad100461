"""The simulated API behaves like the reference: auth, headers, paging, errors, faults, lifecycle."""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
from datetime import datetime

import pytest
from conftest import FakeClock

from exporter.simulator import (
    API_KEY,
    Faults,
    Item,
    Profile,
    SimEnvironment,
    Simulator,
    rfc3339,
    static_items,
)

T0 = 1_795_348_800.0
BUSY, DYING = "env_01demoBusySandboxes00", "env_01demoDyingWorkers000"  # two of the demo's environments
OK_HEADERS = {"anthropic-version": "2023-06-01", "anthropic-beta": "managed-agents-2026-04-01"}


def make(*envs: SimEnvironment, **kw) -> tuple[Simulator, FakeClock]:
    clock = FakeClock(T0)
    return Simulator(envs, clock=clock, sleep=clock.sleep, **kw), clock


def get(sim: Simulator, env: SimEnvironment, headers: dict | None = None, **query):
    auth = {"authorization": f"Bearer {env.key}"} if headers is None else headers
    r = sim.handle(
        f"/v1/environments/{env.id}/work", {k: [str(v)] for k, v in query.items()}, {**OK_HEADERS, **auth}
    )
    return r.status, r.headers, r.body


def list_all(sim: Simulator, env: SimEnvironment, limit: int = 7) -> list[dict]:
    items, cursor, pages = [], None, 0
    while True:
        query = {"limit": limit, **({"page": cursor} if cursor else {})}
        status, _, body = get(sim, env, **query)
        assert status == 200, body
        doc = json.loads(body)
        items += doc["data"]
        cursor, pages = doc["next_page"], pages + 1
        if not cursor:
            return items
        assert pages < 1000


@pytest.fixture
def env() -> SimEnvironment:
    return SimEnvironment("env_sim", "sim", items=static_items(23, T0))


@pytest.mark.parametrize(
    "auth",
    [
        {"authorization": "Bearer sk-ant-env-env_sim"},  # the environment key
        {"x-api-key": API_KEY},  # an API key, as the reference's curl example sends it
        {"authorization": f"Bearer {API_KEY}"},  # an API key, as the official SDK sends it
    ],
)
def test_both_credential_kinds_are_accepted(env, auth):
    sim, _ = make(env)
    assert get(sim, env, auth)[0] == 200


@pytest.mark.parametrize(
    "auth",
    [
        {},
        {"authorization": "Bearer wrong"},
        {"x-api-key": "wrong"},
        {"authorization": "Basic sk-ant-env-env_sim"},
    ],
)
def test_wrong_credentials_get_a_401_in_the_api_error_shape(env, auth):
    sim, _ = make(env)
    status, headers, body = get(sim, env, auth)
    assert status == 401
    doc = json.loads(body)
    assert doc["type"] == "error" and doc["error"]["type"] == "authentication_error"
    assert headers["request-id"] == doc["request_id"] and doc["request_id"].startswith("req_")


def test_another_environments_key_is_refused():
    a, b = SimEnvironment("env_a", "a"), SimEnvironment("env_b", "b")
    sim, _ = make(a, b)
    assert get(sim, b, {"authorization": f"Bearer {a.key}"})[0] == 401


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("anthropic-version", "anthropic-version: header is required"),
        ("anthropic-beta", "requires the anthropic-beta header managed-agents-2026-04-01"),
    ],
)
def test_version_and_beta_headers_are_required(env, drop, message):
    sim, _ = make(env)
    headers = {k: v for k, v in OK_HEADERS.items() if k != drop}
    r = sim.handle(f"/v1/environments/{env.id}/work", {}, {**headers, "authorization": f"Bearer {env.key}"})
    assert r.status == 400
    assert message in json.loads(r.body)["error"]["message"]


def test_unknown_environment_is_a_404(env):
    sim, _ = make(env)
    r = sim.handle("/v1/environments/env_nope/work", {}, {**OK_HEADERS, "x-api-key": API_KEY})
    assert (r.status, json.loads(r.body)["error"]["type"]) == (404, "not_found_error")


@pytest.mark.parametrize("limit", [0, 11, "x"])
def test_limit_has_a_server_side_maximum(env, limit):
    sim, _ = make(env, max_page_size=10)
    assert get(sim, env, limit=limit)[0] == 400


def test_paging_lists_every_item_once_with_opaque_cursors(env):
    sim, _ = make(env)
    items = list_all(sim, env, limit=5)
    assert sorted(i["id"] for i in items) == sorted(i.id for i in env.items)
    _, _, body = get(sim, env, limit=5)
    cursor = json.loads(body)["next_page"]
    assert "work_" not in cursor  # opaque, not an id
    assert get(sim, env, limit=5, page="garbage!")[0] == 400


def test_the_default_page_size_is_used_without_a_limit(env):
    sim, _ = make(env)
    assert len(json.loads(get(sim, env)[2])["data"]) == 20


def test_items_have_every_documented_field_and_never_a_secret(env):
    sim, _ = make(env)
    for item in list_all(sim, env):
        assert set(item) == {
            "id",
            "type",
            "environment_id",
            "state",
            "created_at",
            "acknowledged_at",
            "started_at",
            "latest_heartbeat_at",
            "stop_requested_at",
            "stopped_at",
            "metadata",
            "data",
            "secret",
        }
        assert item["secret"] is None and item["type"] == "work" and item["environment_id"] == "env_sim"
        for key in ("created_at", "acknowledged_at", "started_at", "latest_heartbeat_at"):
            if item[key] is not None:
                assert datetime.fromisoformat(item[key]).tzinfo is not None


@pytest.mark.parametrize("status", ["401", "404", "429", "500", "529"])
def test_error_rate_faults(env, status):
    env.faults = Faults(error_rates={status: 1.0}, retry_after_seconds=2)
    sim, _ = make(env)
    code, headers, body = get(sim, env)
    assert code == int(status)
    assert json.loads(body)["type"] == "error"
    assert headers.get("retry-after") == ("2" if status == "429" else None)


def test_html_error_pages(env):
    env.faults = Faults(error_rates={"500": 1.0}, html_errors=True)
    sim, _ = make(env)
    code, headers, body = get(sim, env)
    assert (code, headers["content-type"]) == (500, "text/html")
    assert body.startswith(b"<html>")


def test_latency_is_added_to_every_page(env):
    env.faults = Faults(latency_seconds=0.25)
    sim, clock = make(env)
    list_all(sim, env, limit=10)
    assert clock.sleeps == [0.25, 0.25, 0.25]


def test_truncated_json(env):
    env.faults = Faults(truncated_json=1.0)
    sim, _ = make(env)
    with pytest.raises(ValueError):
        json.loads(get(sim, env)[2])


def test_repeated_cursor(env):
    env.faults = Faults(repeat_cursor=True)
    sim, _ = make(env)
    first = json.loads(get(sim, env, limit=5)[2])["next_page"]
    second = json.loads(get(sim, env, limit=5, page=first)[2])["next_page"]
    assert first == second


def test_empty_pages_come_before_each_page_of_items(env):
    env.faults = Faults(empty_pages=2)
    sim, _ = make(env)
    status, _, body = get(sim, env, limit=10)
    assert (status, json.loads(body)["data"]) == (200, [])
    assert len(list_all(sim, env, limit=10)) == 23


def test_a_live_item_walks_its_whole_lifecycle_and_heartbeats():
    item = Item(
        "work_1",
        "session_1",
        created=100.0,
        acknowledged=110.0,
        started=115.0,
        stop_requested=200.0,
        stopped=205.0,
        first_heartbeat=112.0,
        heartbeat_interval=5.0,
    )
    assert [item.state(t) for t in (105, 111, 120, 201, 300)] == [
        "queued",
        "starting",
        "active",
        "stopping",
        "stopped",
    ]
    assert item.latest_heartbeat(111.0) is None
    assert item.latest_heartbeat(130.0) == 127.0
    assert item.latest_heartbeat(999.0) == 202.0  # none after it stopped
    dead = Item(
        "work_2",
        "s",
        created=100.0,
        acknowledged=110.0,
        started=115.0,
        stop_requested=900.0,
        stopped=905.0,
        first_heartbeat=112.0,
        heartbeat_interval=5.0,
        dies=150.0,
    )
    assert dead.state(600.0) == "active" and dead.latest_heartbeat(600.0) == 147.0


def test_live_environments_move_and_their_ground_truth_matches_the_listing():
    env = SimEnvironment(
        "env_live",
        "live",
        seed=7,
        profile=Profile(arrivals_per_second=0.5, worker_death_rate=0.3, queue_wait=30),
    )
    sim, clock = make(env)
    first = sim.truth(env.id)
    clock.now += 120
    later = sim.truth(env.id)
    assert first != later
    sim.pause()
    items = list_all(sim, env, limit=13)
    truth = sim.truth(env.id)
    listed = {s: sum(1 for i in items if i["state"] == s) for s in truth["items"]}
    assert listed == truth["items"]
    assert sum(truth["items"].values()) > 50
    assert truth["items"]["active"] > 0 and truth["items"]["stopped"] > 0
    assert any(age > 60 for age in truth["heartbeat_ages"]["active"])  # dead workers


def test_the_demo_environments_differ_in_character():
    from exporter.simulator import demo_environments

    sim, _ = make(*demo_environments())
    busy, idle, dying = (sim.truth(e) for e in sim.environments)
    assert sum(busy["items"].values()) > 10 * sum(idle["items"].values())
    assert max(dying["heartbeat_ages"]["active"]) > 300
    # Live workers heartbeat every 30 s, as the SDK's worker does with its 90 s lease.
    assert max(busy["heartbeat_ages"]["active"]) <= 30
    dying_env, busy_env = sim.environments[DYING], sim.environments[BUSY]
    hour = [T0 + 10 * k for k in range(360)]
    assert {busy_env.workers_polling(t) for t in hour} == {4}
    assert min(dying_env.workers_polling(t) for t in hour) < 4  # dead workers are missing a while


@pytest.mark.parametrize(
    ("faults", "status", "encoding", "check"),
    [
        (Faults(gzip_bomb_bytes=1 << 24), 200, "gzip", lambda body: len(gzip.decompress(body)) == 1 << 24),
        (Faults(malformed_gzip=True), 200, "gzip", lambda body: body.startswith(b"\x1f\x8b")),
        (Faults(nesting_depth=1000), 200, None, lambda body: body == b"[" * 1000 + b"]" * 1000),
        (Faults(cursor_bytes=5000), 200, None, lambda body: len(json.loads(body)["next_page"]) == 5000),
    ],
    ids=["gzip-bomb", "malformed-gzip", "deep-nesting", "huge-cursor"],
)
def test_hostile_bodies(env, faults, status, encoding, check):
    env.faults = faults
    code, headers, body = get(make(env)[0], env)
    assert (code, headers.get("content-encoding")) == (status, encoding)
    assert check(body)


def test_an_echoed_credential(env):
    env.faults = Faults(echo_credential=True)
    code, headers, body = get(make(env)[0], env)
    assert code == 401
    assert env.key in json.loads(body)["error"]["message"] and env.key in headers["request-id"]


def test_a_trickling_body_is_marked_for_the_http_layer(env):
    env.faults = Faults(trickle_bytes_per_second=2.0)
    r = make(env)[0].handle(
        f"/v1/environments/{env.id}/work", {}, {**OK_HEADERS, "authorization": f"Bearer {env.key}"}
    )
    assert (r.status, r.trickle_bytes_per_second) == (200, 2.0)


def test_leaked_secrets_are_on_every_item(env):
    env.faults = Faults(leak_secrets=True)
    _, _, body = get(make(env)[0], env, limit=5)
    assert [item["secret"] for item in json.loads(body)["data"]] == [
        f"work-secret-{item.id}" for item in env.items[:5]
    ]


def stats(sim: Simulator, env: SimEnvironment, auth: dict | None = None):
    r = sim.handle(
        f"/v1/environments/{env.id}/work/stats", {}, {**OK_HEADERS, **(auth or {"x-api-key": API_KEY})}
    )
    return r.status, json.loads(r.body)


def test_work_stats_agree_with_the_items():
    env = SimEnvironment(
        "env_q", "q", seed=5, profile=Profile(arrivals_per_second=1.0, queue_wait=20, worker_death_rate=0.3)
    )
    sim, _ = make(env)
    sim.pause()
    t = sim.now()
    status, doc = stats(sim, env)
    queued = [i for i in env.items if i.created <= t and i.state(t) == "queued"]
    pending = [i for i in queued if i.polled is not None and i.polled <= t]
    assert status == 200 and doc["type"] == "work_queue_stats"
    assert (doc["depth"], doc["pending"]) == (len(queued) - len(pending), len(pending))
    assert doc["depth"] > 0 and doc["pending"] >= 0
    assert doc["oldest_queued_at"] == rfc3339(min(i.created for i in queued))
    # Every item whose worker died is one of the workers missing now (a worker runs many items).
    dead = {i.worker for i in env.items if i.dies is not None and i.dies <= t < i.dies + 120}
    assert doc["workers_polling"] <= 4 - len(dead)
    assert sim.truth(env.id)["queue"] == doc


def test_work_stats_without_worker_ids_say_null_and_an_empty_queue_has_no_oldest():
    env = SimEnvironment("env_n", "n", profile=Profile(arrivals_per_second=0.0, workers_send_id=False))
    status, doc = stats(make(env)[0], env, {"authorization": f"Bearer {env.key}"})
    assert (status, doc["depth"], doc["pending"], doc["oldest_queued_at"], doc["workers_polling"]) == (
        200,
        0,
        0,
        None,
        None,
    )


def test_work_stats_can_be_made_to_fail_alone(env):
    env.faults = Faults(stats_status=503)
    sim = make(env)[0]
    assert stats(sim, env)[0] == 503
    assert get(sim, env)[0] == 200


def test_ground_truth_transitions_in_a_window():
    item = Item(
        "work_1",
        "s",
        created=100.0,
        acknowledged=110.0,
        started=115.0,
        stop_requested=200.0,
        stopped=205.0,
        first_heartbeat=112.0,
        heartbeat_interval=5.0,
    )
    env = SimEnvironment("env_t", "t", items=[item])
    assert env.transitions(105.0, 200.0) == {
        "transitions": {"created": 0, "acknowledged": 1, "started": 1, "stop_requested": 1, "stopped": 0},
        "steps": {"queue_wait": [10.0], "start_duration": [5.0], "run_duration": [], "stop_duration": []},
    }


def test_health_check_items_come_with_live_work():
    env = SimEnvironment("env_h", "h", seed=3, profile=Profile(arrivals_per_second=2.0))
    make(env)  # the simulator starts its environments' lives
    kinds = {json.loads(i)["data"]["type"] for i in (env.blob(x, T0, {}) for x in env.items)}
    assert kinds == {"session", "healthcheck"}


def environments(sim: Simulator, auth: dict, **query):
    r = sim.handle("/v1/environments", {k: [str(v)] for k, v in query.items()}, {**OK_HEADERS, **auth})
    return r.status, json.loads(r.body)


def test_the_environments_listing_pages_and_leaves_archived_ones_out_unless_asked():
    envs = [SimEnvironment(f"env_{n}", f"e{n}") for n in range(5)]
    envs[1].archived_at = T0 - 60
    envs[2].self_hosted = False
    sim, _ = make(*envs)
    status, first = environments(sim, {"x-api-key": API_KEY}, limit=3)
    _, second = environments(sim, {"x-api-key": API_KEY}, limit=3, page=first["next_page"])
    assert status == 200 and second["next_page"] is None
    assert [e["id"] for e in first["data"] + second["data"]] == ["env_0", "env_2", "env_3", "env_4"]
    assert first["data"][1]["config"]["type"] == "cloud"
    _, everything = environments(sim, {"authorization": f"Bearer {API_KEY}"}, include_archived="true")
    assert [e["archived_at"] is not None for e in everything["data"]] == [False, True, False, False, False]
    assert environments(sim, {"authorization": f"Bearer {envs[0].key}"})[0] == 401  # an API key only


def test_a_busy_port_is_one_line_not_a_traceback():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "exporter.simulator", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert run.returncode == 1
    assert run.stderr == (
        f"python -m exporter.simulator: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )


def test_with_no_worker_polling_nothing_is_newly_acknowledged():
    """As the NoWorkersPolling runbook says: a worker acknowledges work only while it is alive (and
    so polling); with none alive, work waits queued until one is replaced."""
    env = SimEnvironment(
        "env_w",
        "w",
        seed=9,
        profile=Profile(arrivals_per_second=0.5, workers=2, worker_death_rate=0.6, worker_restart=300),
    )
    sim, clock = make(env)
    acks: dict[str, float] = {}
    stalled = []  # work queued while no worker polls, as work/stats says
    for _ in range(3 * 3600 // 15):
        clock.sleep(15)
        doc = stats(sim, env)[1]
        if doc["workers_polling"] == 0:
            stalled.append(doc["depth"] + doc["pending"])
        acks |= {
            i.id: i.acknowledged
            for i in env.items
            if i.acknowledged is not None and i.acknowledged <= clock.now
        }
    assert len(acks) > 3000
    assert min(env.workers_polling(a) for a in acks.values()) >= 1
    assert stalled and max(stalled) > 0  # the case happened: the test can fail
