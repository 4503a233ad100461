"""`python -m exporter.simulator`: the simulated API on its own, for tests, benchmarks and trying things."""

from __future__ import annotations

import argparse
import json
import threading
import time

from exporter.simulator.api import MAX_PAGE_SIZE, Simulator
from exporter.simulator.http import serve
from exporter.simulator.routes import API_KEY
from exporter.simulator.world import SimEnvironment, demo_environments, static_items


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
    try:
        server = serve(sim, args.host, args.port)
    except OSError as exc:  # a busy port, an address this host does not have: one line, no traceback
        p.exit(1, f"{p.prog}: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}\n")
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
