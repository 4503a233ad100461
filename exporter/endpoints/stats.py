"""`GET /v1/environments/{id}/work/stats`: the queue as the API counts it.

Asked with the environment's `stats_credentials` when configured, else with its
listing credentials (the SDK does not say which kind this endpoint accepts).
"""

from __future__ import annotations

from typing import NamedTuple

from exporter.api.codec import QueueStats, UpstreamFormatError, parse_stats, stats_path
from exporter.config.model import Credentials, Environment
from exporter.results import SourceFailed
from exporter.running.sources import Fetch, WallClock


class StatsResult(NamedTuple):
    stats: QueueStats
    arrived: float  # Unix seconds: what the oldest item's age is measured against


class StatsSource:
    name = "stats"

    def __init__(self, wall_clock: WallClock):
        self.wall_clock = wall_clock

    def credentials(self, env: Environment) -> Credentials:
        return env.stats_credentials or env.credentials

    async def collect(self, env: Environment, fetch: Fetch, attention: int = 0) -> StatsResult:
        body = await fetch(stats_path(env.id), {})
        arrived = self.wall_clock()
        try:
            return StatsResult(parse_stats(body), arrived)
        except UpstreamFormatError as exc:
            raise SourceFailed("invalid_response", f"HTTP 200 but not work queue statistics: {exc}") from None
