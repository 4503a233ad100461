"""A simulated Managed Agents API: `GET /v1/environments/{id}/work` with a living world behind it.

`--demo`, the end-to-end tests and the benchmark run against it. Its parts:

- `world`: environments and their work items' lifecycles; the ground truth;
- `api`: the API's behaviour (auth, headers, paging, errors) independent of sockets;
- `faults`: what can go wrong per environment, from 429s to gzip bombs;
- `http`: the HTTP server, with control endpoints for tests.

Run standalone: `python -m exporter.simulator --port 8080`.
"""

from exporter.simulator.api import Simulator
from exporter.simulator.faults import Faults
from exporter.simulator.http import serve
from exporter.simulator.routes import API_KEY, Response, Route
from exporter.simulator.world import Item, Profile, SimEnvironment, demo_environments, rfc3339, static_items

__all__ = [
    "API_KEY",
    "Faults",
    "Item",
    "Profile",
    "Response",
    "Route",
    "SimEnvironment",
    "Simulator",
    "demo_environments",
    "rfc3339",
    "serve",
    "static_items",
]
