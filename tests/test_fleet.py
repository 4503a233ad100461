"""Big fleets: shards that cover every environment once, and discovery with keys from a directory."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
import respx
import yaml
from conftest import run_virtual
from exposition import samples, value
from loopback import loopback_server
from processes import exporter_process, free_port, running, simulator_process, wait_for
from tools import query, require
from upstream import running_exporter, running_simulator

from exporter.api.codec import ListedEnvironment
from exporter.config.flags import parse_shard
from exporter.config.load import parse_config
from exporter.config.shard import Shard
from exporter.redact import Redactor
from exporter.running.failures import FailureLog
from exporter.running.isolation import Boundary
from exporter.running.targets import DiscoveryState, KeyStore, Targets
from exporter.simulator import API_KEY, SimEnvironment, static_items
from exporter.wiring import Lasting, build

NOW = time.time()


def test_m_shards_cover_every_environment_exactly_once_and_evenly():
    ids = [f"env_{n:05d}" for n in range(3000)]
    owners = {env_id: [i for i in range(3) if Shard(i, 3).owns(env_id)] for env_id in ids}
    assert all(len(o) == 1 for o in owners.values())
    sizes = [sum(o == [i] for o in owners.values()) for i in range(3)]
    assert all(900 <= size <= 1100 for size in sizes), sizes
    assert all(Shard(0, 1).owns(env_id) for env_id in ids)


@pytest.mark.parametrize(
    ("index", "total", "hostname", "expected"),
    [
        ("2", 3, "whatever", Shard(2, 3)),
        ("auto", 3, "anthropic-work-exporter-2", Shard(2, 3)),
        ("auto", 12, "exporter-11", Shard(11, 12)),
        ("0", 1, "x", Shard(0, 1)),
    ],
)
def test_shard_flags(index, total, hostname, expected):
    assert parse_shard(index, total, hostname) == expected


@pytest.mark.parametrize(
    ("index", "total", "hostname", "message"),
    [
        ("auto", 3, "exporter", "--shard.index auto: the host name 'exporter' does not end in a number"),
        ("auto", 3, "exporter-3", "--shard.index: want auto or a number from 0 to 2, got '3'"),
        ("-1", 3, "x", "--shard.index: want auto or a number from 0 to 2, got '-1'"),
        ("0", 0, "x", "--shard.total: want a positive number, got 0"),
    ],
)
def test_bad_shard_flags_say_what_is_wrong(index, total, hostname, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_shard(index, total, hostname)


def env(id: str, items: int = 3, **kw) -> SimEnvironment:
    return SimEnvironment(id, f"name-{id}", items=static_items(items, NOW, seed=len(id)), **kw)


def discovery_config(url: str, keys_dir: Path, interval: float = 300):
    text = (
        f"api: {{base_url: '{url}', max_retries: 0}}\n"
        f"discovery:\n  credentials: {{type: api_key, value_env: ORG_KEY}}\n"
        f"  refresh_interval_seconds: {interval}\n  environment_keys_dir: {keys_dir}\n"
    )
    return parse_config(text, {"ORG_KEY": API_KEY})


def watched(body: str) -> dict[str, float]:
    return {
        dict(labels)["environment_id"]: v
        for (name, labels), v in samples(body).items()
        if name == "anthropic_work_scrape_success"
    }


def test_discovery_watches_self_hosted_unarchived_environments_with_keys_from_a_directory(
    tmp_path, log_stream
):
    keyed, keyless, configured = env("env_keyed"), env("env_keyless"), env("env_configured")
    archived, cloud = env("env_archived"), env("env_cloud")
    archived.archived_at = NOW - 60
    cloud.self_hosted = False
    (tmp_path / "env_keyed").write_text(keyed.key + "\n")
    (tmp_path / "env_archived").write_text(archived.key)
    with running_simulator(keyed, keyless, configured, archived, cloud) as (_sim, url):
        config = parse_config(
            f"api: {{base_url: '{url}', max_retries: 0}}\n"
            "discovery:\n  credentials: {type: api_key, value_env: ORG_KEY}\n"
            f"  environment_keys_dir: {tmp_path}\nenvironments:\n  - id: env_configured\n    name: mine\n"
            "    credentials: {type: environment_key, value_env: CONFIGURED_KEY}\n",
            {"ORG_KEY": API_KEY, "CONFIGURED_KEY": configured.key},
        )
        with running_exporter(config) as exporter:
            base = f"http://{exporter.address}"
            wait_for("discovery", lambda: len(watched(httpx.get(f"{base}/metrics").text)) == 3)
            body = httpx.get(f"{base}/metrics").text
            probe = httpx.get(f"{base}/probe", params={"environment_id": "env_keyed"})
            for _ in range(2):
                httpx.get(f"{base}/metrics")
    metrics = samples(body)
    assert watched(body) == {"env_configured": 1, "env_keyed": 1, "env_keyless": 0}
    assert (
        value(metrics, "anthropic_work_environment_info", environment_id="env_configured", name="mine") == 1
    )
    assert (
        value(metrics, "anthropic_work_environment_info", environment_id="env_keyed", name="name-env_keyed")
        == 1
    )
    assert (
        value(
            metrics,
            "anthropic_work_listing_failures_total",
            environment_id="env_keyless",
            source="work",
            reason="no_credentials",
        )
        >= 1
    )
    assert value(metrics, "anthropic_work_discovery_success") == 1
    assert value(metrics, "anthropic_work_discovered_environments") == 3  # keyed, keyless, configured
    assert value(metrics, "anthropic_work_discovery_requests_total", code="200") >= 1
    assert probe.status_code == 200 and 'environment_id="env_keyed"' in probe.text
    lines = [
        line for line in log_stream.getvalue().splitlines() if "env_keyless" in line and "failed" in line
    ]
    assert len(lines) == 1 and "reason=no_credentials" in lines[0]  # one cause, one line: not per source
    for key in (keyed.key, configured.key, API_KEY):
        assert key not in log_stream.getvalue() and key not in body


def test_a_new_key_file_is_picked_up_without_a_restart_and_a_vanished_environment_stops_being_exported(
    tmp_path,
):
    a, b = env("env_a"), env("env_b")
    (tmp_path / "env_a").write_text(a.key)
    with running_simulator(a, b) as (sim, url):
        config = discovery_config(url, tmp_path, interval=0.2)
        with running_exporter(config) as exporter:
            base = f"http://{exporter.address}"
            wait_for(
                "both discovered",
                lambda: watched(httpx.get(f"{base}/metrics").text) == {"env_a": 1, "env_b": 0},
            )
            (tmp_path / "env_b").write_text(b.key)  # the Secret gains a key
            os.utime(tmp_path)
            wait_for(
                "the new key used",
                lambda: watched(httpx.get(f"{base}/metrics").text) == {"env_a": 1, "env_b": 1},
            )
            del sim.environments["env_a"]  # deleted upstream
            wait_for("env_a gone", lambda: watched(httpx.get(f"{base}/metrics").text) == {"env_b": 1})
            body = httpx.get(f"{base}/metrics").text
    assert 'environment_id="env_a"' not in body  # nothing kept for it: no counters either


def test_a_failing_discovery_keeps_the_environments_it_knew(tmp_path, log_stream):
    a = env("env_a")
    (tmp_path / "env_a").write_text(a.key)
    with running_simulator(a) as (sim, url):
        config = discovery_config(url, tmp_path, interval=0.2)
        with running_exporter(config) as exporter:
            base = f"http://{exporter.address}"
            wait_for("discovered", lambda: watched(httpx.get(f"{base}/metrics").text) == {"env_a": 1})
            sim.environments_status = 503
            wait_for(
                "discovery to fail",
                lambda: (
                    value(samples(httpx.get(f"{base}/metrics").text), "anthropic_work_discovery_success") == 0
                ),
            )
            body = httpx.get(f"{base}/metrics").text
    assert watched(body) == {"env_a": 1}
    failures = [line for line in log_stream.getvalue().splitlines() if "discovery failed" in line]
    assert len(failures) == 1 and "reason=http_503" in failures[0] and "known=1" in failures[0]


def test_shards_of_one_fleet_watch_disjoint_sets_that_cover_it(tmp_path):
    envs = [env(f"env_{n:03d}", items=1) for n in range(30)]
    for e in envs:
        (tmp_path / e.id).write_text(e.key)
    with running_simulator(*envs) as (_sim, url):
        config = discovery_config(url, tmp_path)
        seen = []
        for index in range(3):
            with running_exporter(config, shard=Shard(index, 3)) as exporter:
                base = f"http://{exporter.address}"
                wait_for("discovery", lambda base=base: watched(httpx.get(f"{base}/metrics").text))
                mine = watched(httpx.get(f"{base}/metrics").text)
                assert set(mine.values()) == {1}
                assert (
                    value(
                        samples(httpx.get(f"{base}/metrics").text),
                        "anthropic_work_exporter_shard_info",
                        index=str(index),
                        total="3",
                    )
                    == 1
                )
                seen.append(set(mine))
    assert sorted(e for s in seen for e in s) == sorted(e.id for e in envs)


@pytest.mark.parametrize(
    ("shard", "named"),
    [
        (Shard(0, 2), "shard 1 of 2, not by this exporter (shard 0 of 2)"),
        (
            parse_shard("auto", 2, "anthropic-work-exporter-0"),
            "shard 1 of 2 (pod anthropic-work-exporter-1), not by this exporter "
            "(shard 0 of 2 (pod anthropic-work-exporter-0))",
        ),
    ],
    ids=["index", "auto"],
)
def test_a_probe_for_an_environment_of_another_shard_names_that_shard(tmp_path, shard, named):
    """Configured or discovered, an environment another shard watches: 400 naming that shard (and its pod
    under --shard.index auto); an id nobody watches keeps its own answer."""
    envs = [env(f"env_{n:03d}", items=1) for n in range(8)]
    theirs = [e.id for e in envs if Shard(1, 2).owns(e.id)]
    for e in envs:
        (tmp_path / e.id).write_text(e.key)
    with (
        running_simulator(*envs) as (_sim, url),
        running_exporter(discovery_config(url, tmp_path), shard=shard) as exporter,
    ):
        base = f"http://{exporter.address}"
        wait_for("discovery", lambda: watched(httpx.get(f"{base}/metrics").text))
        answer = httpx.get(f"{base}/probe", params={"environment_id": theirs[0]})
        nobody = httpx.get(f"{base}/probe", params={"environment_id": "env_nobody_has"})
    assert (answer.status_code, answer.text) == (
        400,
        f"400: environment_id {theirs[0]} is watched by {named}: ask that one\n",
    )
    assert nobody.status_code == 400 and "is not watched by this exporter" in nobody.text


FLEET = 300
SHARDS = 3
SHARD_ALERTS = {
    rule["alert"]: rule["expr"]
    for group in yaml.safe_load(
        (Path(__file__).parent.parent / "rules/anthropic-work.rules.yml").read_text()
    )["groups"]
    for rule in group["rules"]
    if rule.get("alert", "").startswith("AnthropicWorkExporterShard")
    or rule.get("alert") == "AnthropicWorkExporterEnvironmentsUnwatched"
}
BUDGET = 20.0  # requests a second, per replica
PROMETHEUS_ACCEPT = (  # what Prometheus 2.42 asks a target for
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@contextlib.contextmanager
def replayed_answer() -> Iterator[tuple[str, dict[str, bytes | str]]]:
    """A target that answers with bytes it was given, gzipped once: the same scrape with nothing to
    compute, for Prometheus to time beside the exporter in the same run. Until given a body it
    answers an empty exposition."""
    answer: dict[str, bytes | str] = {"body": gzip.compress(b""), "type": "text/plain; version=0.0.4"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = answer["body"]
            assert isinstance(body, bytes)
            self.send_response(200)
            self.send_header("Content-Type", str(answer["type"]))
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with loopback_server(Handler) as server:
        yield f"127.0.0.1:{server.server_port}", answer


REFRESH = 15.0  # seconds: 100 environments x 2 requests / 15 s = 13.3 requests a second per replica


@pytest.mark.slow
def test_a_fleet_of_300_environments_on_three_background_shards_under_a_real_prometheus(tmp_path):
    """Every environment exactly once across the shards, with the simulator's numbers, within the
    request budget, and every scrape answered from lines rendered before it: timed by Prometheus
    against a floor in the same run, a target replaying one replica's answer."""
    prometheus = require("prometheus")
    with simulator_process("--static", *["5"] * FLEET) as sim:
        keys_dir = tmp_path / "keys"
        keys_dir.mkdir()
        for env_id, key in sim["environments"].items():
            (keys_dir / env_id).write_text(key)
        (tmp_path / "config.yaml").write_text(
            yaml.safe_dump(
                {
                    "api": {"base_url": sim["url"], "max_requests_per_second": BUDGET},
                    "scrape": {"mode": "background", "refresh_interval_seconds": REFRESH},
                    "discovery": {
                        "credentials": {"type": "api_key", "value_env": "ORG_KEY"},
                        "environment_keys_dir": str(keys_dir),
                    },
                }
            )
        )
        with contextlib.ExitStack() as stack:
            urls = [
                stack.enter_context(
                    exporter_process(
                        "--config.file",
                        "config.yaml",
                        "--shard.index",
                        str(index),
                        "--shard.total",
                        str(SHARDS),
                        env={"ORG_KEY": sim["api_key"]},
                        cwd=tmp_path,
                    )
                )[0]
                for index in range(SHARDS)
            ]
            floor, replay = stack.enter_context(replayed_answer())
            prom_port = free_port()
            (tmp_path / "prometheus.yml").write_text(
                yaml.safe_dump(
                    {
                        "global": {"scrape_interval": "5s", "scrape_timeout": "5s"},
                        "scrape_configs": [
                            {
                                "job_name": "anthropic-work",
                                "static_configs": [{"targets": [u.removeprefix("http://") for u in urls]}],
                            },
                            {"job_name": "floor", "static_configs": [{"targets": [floor]}]},
                        ],
                    }
                )
            )
            args = [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ]
            stack.enter_context(running(args, tmp_path / "prom.log", f"http://127.0.0.1:{prom_port}/-/ready"))
            api = f"http://127.0.0.1:{prom_port}/api/v1"
            wait_for(
                "every environment listed once, and scraped",
                lambda: len(query(api, "anthropic_work_scrape_success == 1")) == FLEET,
                timeout=120,
            )
            # The floor: replica 0's answer as Prometheus asks for it, its names changed (same
            # length) so that its copy of the series is not counted with the exporters'.
            answer = httpx.get(f"{urls[0]}/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
            replay["type"] = answer.headers["Content-Type"]
            replay["body"] = gzip.compress(answer.content.replace(b"anthropic_work_", b"floor_copy_wrk_"), 1)
            before = httpx.get(f"{sim['url']}/_sim/stats").json()
            started = time.monotonic()
            wait_for("a minute of scrapes", lambda: time.monotonic() - started >= 60, timeout=90)
            after = httpx.get(f"{sim['url']}/_sim/stats").json()
            elapsed = time.monotonic() - started
            owners = query(api, "count by (environment_id) (anthropic_work_scrape_success)")
            items = query(api, "anthropic_work_items")
            slowest = by_job(query(api, "max_over_time(scrape_duration_seconds[1m])"))
            p90 = by_job(query(api, "quantile_over_time(0.9, scrape_duration_seconds[1m])"))
            truths = {
                env_id: httpx.get(f"{sim['url']}/_sim/truth", params={"environment_id": env_id}).json()[
                    "items"
                ]
                for env_id in sim["environments"]
            }
            shard_alerts = {name: query(api, expr) for name, expr in SHARD_ALERTS.items()}
            watched_total = query(api, "sum(anthropic_work_exporter_watched_environments)")
            known = query(api, "anthropic_work_exporter_known_environments")
            totals = query(api, "anthropic_work_exporter_shards")
            # One shard's series gone, as when its pod is down: the unwatched rule sees it.
            one_gone = query(
                api,
                SHARD_ALERTS["AnthropicWorkExporterEnvironmentsUnwatched"].replace(
                    "anthropic_work_exporter_watched_environments{",
                    f'anthropic_work_exporter_watched_environments{{instance!="{urls[0].removeprefix("http://")}",',
                ),
            )
    assert len(owners) == FLEET and {o["value"][1] for o in owners} == {"1"}
    # The shards agree, all report, and together watch every environment: the shard alerts are quiet.
    assert shard_alerts == {name: [] for name in SHARD_ALERTS}
    assert float(watched_total[0]["value"][1]) == FLEET
    assert [float(k["value"][1]) for k in known] == [FLEET] * SHARDS
    assert [float(t["value"][1]) for t in totals] == [SHARDS] * SHARDS
    assert len(one_gone) == 1 and float(one_gone[0]["value"][1]) < FLEET
    got = {(s["metric"]["environment_id"], s["metric"]["state"]): float(s["value"][1]) for s in items}
    assert got == {(e, state): n for e, t in truths.items() for state, n in t.items()}
    requests = sum(after["requests"].values()) - sum(before["requests"].values())
    assert requests <= SHARDS * (BUDGET * elapsed + BUDGET)  # within every replica's budget and burst
    assert requests >= SHARDS * 100 * 2 * (elapsed / REFRESH - 1)  # and really refreshing
    # Answered from results rendered as they arrived: 20,000 series per replica, timed by Prometheus,
    # which counts its own parsing too, on a machine it shares with the simulator and the replicas.
    # The floor is the same answer replayed, so what is left is the exporter's own part. Three runs
    # here: the replicas' 90th percentiles 54-130 ms against the floor's 42-123 ms (-39 to +30 ms;
    # the machine's load moves both), the slowest 62-215 ms against 162-367 ms. When each scrape
    # rendered every environment, the exporter's own part was 200-340 ms, the slowest scrape 0.65 s.
    (floor_p90,) = p90["floor"]
    (floor_slowest,) = slowest["floor"]
    assert len(p90["anthropic-work"]) == SHARDS and all(
        seconds < floor_p90 + 0.1 for seconds in p90["anthropic-work"]
    ), (p90, floor_p90)
    assert len(slowest["anthropic-work"]) == SHARDS and all(
        seconds < floor_slowest + 0.4 for seconds in slowest["anthropic-work"]
    ), (slowest, floor_slowest)


def by_job(vector: list[dict]) -> dict[str, list[float]]:
    """An instant vector's values, grouped by their `job` label."""
    jobs: dict[str, list[float]] = {}
    for sample in vector:
        jobs.setdefault(sample["metric"]["job"], []).append(float(sample["value"][1]))
    return jobs


def test_an_environment_whose_shard_cannot_be_told_is_left_out_and_logged_the_others_stay(log_stream):
    """Shard hashing is a step of each environment: one that raises costs that environment only."""

    class Brittle(Shard):
        def owns(self, environment_id: str) -> bool:
            if environment_id == "env_odd":
                raise ValueError("cannot hash env_odd")
            return True

    config = parse_config(
        "discovery:\n  credentials: {type: api_key, value_env: ANTHROPIC_API_KEY}\n",
        {"ANTHROPIC_API_KEY": "sk-api-key-0123456789"},
    )
    state = DiscoveryState(
        environments=[ListedEnvironment(e, e, True, False) for e in ("env_a", "env_odd", "env_b")],
        generation=1,
    )
    failures = FailureLog()
    targets = Targets(config, Brittle(), state, KeyStore(), Boundary(failures, Redactor()))
    assert asyncio.run(targets.refresh())
    assert [env.id for env in targets.environments()] == ["env_a", "env_b"]
    lines = [line for line in log_stream.getvalue().splitlines() if "shard failed" in line]
    assert len(lines) == 1 and "environment_id=env_odd" in lines[0] and "reason=internal" in lines[0]


def listed_environments(*env_ids: str) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "data": [
                {"id": e, "name": e, "config": {"type": "self_hosted"}, "archived_at": None} for e in env_ids
            ],
            "next_page": None,
        },
    )


@respx.mock
def test_an_environment_missing_from_a_discovery_stays_watched_with_its_counters_until_missing_three_times(
    tmp_path,
):
    """Discovery answers, 30 s apart: env_b is left out of one answer (a hiccup) and of three in a row
    later (gone). Through the hiccup it stays watched and its counters go on; the third miss unwatches it."""
    answers = [("env_a", "env_b"), ("env_a",), ("env_a", "env_b"), ("env_a",), ("env_a",), ("env_a",)]
    respx.get("https://api.anthropic.com/v1/environments").mock(
        side_effect=[listed_environments(*ids) for ids in [*answers, answers[-1]]]
    )
    for env_id in ("env_a", "env_b"):
        respx.get(f"https://api.anthropic.com/v1/environments/{env_id}/work").mock(
            return_value=httpx.Response(200, json={"data": [], "next_page": None})
        )
        respx.get(f"https://api.anthropic.com/v1/environments/{env_id}/work/stats").mock(
            return_value=httpx.Response(200, json={"depth": 0, "pending": 0, "oldest_queued_at": None})
        )
    for env_id in ("env_a", "env_b"):
        (tmp_path / env_id).write_text(f"sk-key-of-{env_id}-0123456789")
    config = parse_config(
        "discovery:\n  credentials: {type: api_key, value_env: ORG_KEY}\n"
        f"  refresh_interval_seconds: 30\n  environment_keys_dir: {tmp_path}\n",
        {"ORG_KEY": "sk-org-key-0123456789"},
    )

    async def go():
        lasting = Lasting(transport=lambda tls: httpx.AsyncHTTPTransport(verify=tls))
        served = build(config, lasting, Shard())
        await served.start()
        seen = []
        try:
            for _ in answers:
                await asyncio.sleep(15)  # between two discoveries
                loop = asyncio.get_running_loop()
                await served.policy.results(served.targets.environments(), loop.time() + 10)
                watched_ids = [env.id for env in served.targets.environments()]
                requests = dict(lasting.counters.requests.get("env_b", {}))
                seen.append((watched_ids, dict(lasting.discovered.missing), requests))
                await asyncio.sleep(15)
        finally:
            await served.aclose(False)
        return seen

    seen = run_virtual(go())
    assert [ids for ids, _, _ in seen] == [["env_a", "env_b"]] * 5 + [["env_a"]]
    assert [missing for _, missing, _ in seen] == [{}, {"env_b": 1}, {}, {"env_b": 1}, {"env_b": 2}, {}]
    requests = [counts["200"] if counts else 0 for _, _, counts in seen]
    assert requests[:5] == [2, 4, 6, 8, 10]  # its counters never started again (work and stats, each scrape)
    assert requests[5] == 0  # unwatched: what was kept for it is dropped
