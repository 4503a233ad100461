"""An endpoint is one declaration: a toy `GET /v1/environments/{id}/workers`, declared in this module
alone, is read by the exporter, shown on /metrics, isolated when it fails, and served by the simulator.

Nothing outside this module knows of it: the exporter and the simulator are handed it beside
the built-in endpoints, as a new endpoint's declaration would be added to `ENDPOINTS`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence

import httpx
from exposition import samples, value
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from upstream import config_for, running_exporter, running_simulator, static_env

from exporter.api.codec import UpstreamFormatError
from exporter.endpoints import ENDPOINTS
from exporter.endpoints.declaration import Endpoint, Fetched
from exporter.results import EnvironmentResult
from exporter.simulator import Response, Route, SimEnvironment, Simulator
from exporter.simulator.routes import DEFAULT_ROUTES, Request

NOW = time.time()
WORKERS_PATH = "/v1/environments/{environment_id}/workers"
ENV = "environment_id"


def decode_workers(body: bytes) -> int:
    """The toy's wire codec: `{"data": [{"id": ...}, ...]}`, the number of workers."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise UpstreamFormatError("not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise UpstreamFormatError("no 'data' list")
    return len(doc["data"])


class WorkersCollector(Collector):
    """`anthropic_work_workers{environment_id="env_a"} 3.0`"""

    def __init__(self, results: Sequence[EnvironmentResult]):
        self.results = results

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for result in self.results:
            fetched = result.values.get("workers")
            if isinstance(fetched, Fetched):
                family.add_metric([result.environment.id], fetched.value)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "anthropic_work_workers", "Workers the API lists.", labels=["environment_id"]
        )


def answer_workers(sim: Simulator, env: SimEnvironment | None, request: Request) -> Response:
    """The simulator's route: three workers, but for env_down, whose workers endpoint is down."""
    assert env is not None
    if env.id == "env_down":
        body = {"type": "error", "error": {"type": "api_error", "message": "down"}}
        return Response(500, {"request-id": request.request_id}, json.dumps(body).encode())
    workers = [{"id": f"worker_{n}", "type": "worker"} for n in range(3)]
    return Response(200, {"request-id": request.request_id}, json.dumps({"data": workers}).encode())


WORKERS = Endpoint(
    name="workers",
    path=WORKERS_PATH,
    decode=decode_workers,
    collectors=lambda results, state: [WorkersCollector(results)],
    simulate=Route(WORKERS_PATH, answer_workers),
)


def test_a_toy_endpoint_declared_here_alone_is_listed_shown_isolated_and_simulated():
    envs = [static_env("env_up", 4, NOW), static_env("env_down", 2, NOW)]
    with running_simulator(*envs, routes=[*DEFAULT_ROUTES, WORKERS.simulate]) as (_sim, url):
        served = httpx.get(
            f"{url}/v1/environments/env_up/workers",
            headers={
                "anthropic-version": "2023-06-01",
                "anthropic-beta": "managed-agents-2026-04-01",
                "authorization": f"Bearer {envs[0].key}",
            },
        )
        with running_exporter(config_for(url, *envs), endpoints=[*ENDPOINTS, WORKERS]) as exporter:
            m = samples(httpx.get(f"http://{exporter.address}/metrics", timeout=30).text)
    assert served.status_code == 200 and len(served.json()["data"]) == 3  # the simulator serves its route
    assert value(m, "anthropic_work_workers", environment_id="env_up") == 3
    assert value(m, "anthropic_work_workers", environment_id="env_down") is None
    down = {"environment_id": "env_down", "source": "workers", "reason": "http_500"}
    assert value(m, "anthropic_work_listing_failures_total", **down) == 1
    for env in envs:  # the work listing and its statistics beside it: untouched
        assert value(m, "anthropic_work_scrape_success", environment_id=env.id) == 1
        assert value(m, "anthropic_work_stats_success", environment_id=env.id) == 1
    assert value(m, "anthropic_work_items", environment_id="env_up", state="queued") is not None


def test_every_built_in_endpoint_and_its_simulated_route_share_one_path():
    for endpoint in ENDPOINTS:
        assert endpoint.simulate.pattern == endpoint.path, endpoint.name
    assert [endpoint.simulate for endpoint in ENDPOINTS] == list(DEFAULT_ROUTES)
