"""Read a /metrics or /probe body the way Prometheus does, for exact assertions."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(body: str) -> Samples:
    """Every sample of a text exposition, keyed by name and sorted labels."""
    out: Samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: Samples, name: str, /, **labels: str) -> float | None:
    return metrics.get((name, tuple(sorted(labels.items()))))
