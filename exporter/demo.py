"""`--demo`: the exporter against the built-in simulator, with no key and no config file."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from exporter.config.keys import Secret
from exporter.config.schema import ApiConfig, BreakdownConfig, Config, Credentials, Environment
from exporter.endpoints import ENDPOINTS, Endpoint
from exporter.simulator import Simulator, demo_environments, serve

log = logging.getLogger("exporter.demo")


def demo_config(simulator_url: str, simulator: Simulator) -> Config:
    """Watch every simulated environment with its own environment key, as in production;
    break work down by the `team` metadata the simulator gives it."""
    return Config(
        api=ApiConfig(base_url=simulator_url),
        breakdown=BreakdownConfig(metadata_keys=("team",)),
        environments=tuple(
            Environment(
                id=env.id, name=env.name, credentials=Credentials("environment_key", Secret(env.key), "demo")
            )
            for env in simulator.environments.values()
        ),
    )


def start_demo(endpoints: Sequence[Endpoint] = ENDPOINTS) -> Config:
    """Start the simulator on a free loopback port, serving each endpoint's route; return a config
    that points at it."""
    simulator = Simulator(demo_environments(), routes=[endpoint.simulate for endpoint in endpoints])
    server = serve(simulator, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.server_port}"
    log.info("demo: simulated API started", extra={"url": url, "environments": len(simulator.environments)})
    return demo_config(url, simulator)
