"""Every upstream endpoint the exporter reads, each declared once (`declaration.Endpoint`).

One module per endpoint: the work listing (`work`), the queue statistics (`stats`), and
discovery (`environments`). Each module ends with its declaration: path, decoder,
source, collectors, credentials, long-lived state and the simulator's route. `ENDPOINTS`
is what the exporter and `--demo`'s simulator are built with; a new endpoint is a new
module and one more entry here (or, for a test, handed to both: `tests/test_endpoints.py`).
The first is the primary one: its outcome is the environment's `scrape_success`.

This layer joins what the layers below hold apart (a source from `running`'s protocol,
folds, the wire codec; collectors from `metrics`; the simulator's route). It may import
every layer below it; only the wiring, the web side and the command line import it.
"""

from __future__ import annotations

from exporter.endpoints.declaration import Endpoint
from exporter.endpoints.environments import DISCOVERY
from exporter.endpoints.stats import STATS
from exporter.endpoints.work import WORK

ENDPOINTS: tuple[Endpoint, ...] = (WORK, STATS, DISCOVERY)
PRIMARY = WORK

__all__ = ["DISCOVERY", "ENDPOINTS", "PRIMARY", "STATS", "WORK", "Endpoint"]
