"""The latest result of every watched environment: written by the engine alone, read by the rest."""

from __future__ import annotations

from exporter.results import EnvironmentResult


class ResultStore:
    """The latest result per environment id, and when it last listed successfully. Long-lived."""

    def __init__(self) -> None:
        self._latest: dict[str, EnvironmentResult] = {}
        self._last_success: dict[str, float] = {}

    def put(self, result: EnvironmentResult) -> None:
        env_id = result.environment.id
        self._latest[env_id] = result
        if result.success:
            self._last_success[env_id] = result.finished_at

    def latest(self, environment_id: str) -> EnvironmentResult | None:
        return self._latest.get(environment_id)

    def last_success(self, environment_id: str) -> float | None:
        """Unix time the environment's last successful listing ended, if it ever did."""
        return self._last_success.get(environment_id)

    def forget_all_but(self, environment_ids: set[str]) -> None:
        """Drop environments no longer watched, so the store stays the size of the config."""
        for table in (self._latest, self._last_success):
            for env_id in set(table) - environment_ids:
                del table[env_id]
