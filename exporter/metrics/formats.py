"""The exposition formats offered: the classic text format and OpenMetrics (1.0.0 and 0.0.1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

OPENMETRICS_MEDIA = "application/openmetrics-text"


@dataclass(frozen=True)
class Format:
    content_type: str
    encoder: Callable[[CollectorRegistry], bytes]

    @property
    def openmetrics(self) -> bool:
        return self.content_type.startswith(OPENMETRICS_MEDIA)


TEXT = Format(CONTENT_TYPE_PLAIN_0_0_4, generate_text)


OPENMETRICS = {
    version: Format(f"{OPENMETRICS_MEDIA}; version={version}; charset=utf-8", generate_openmetrics)
    for version in ("1.0.0", "0.0.1")
}


FORMATS = (TEXT, *OPENMETRICS.values())
