"""What a listing ends with: each source's value or its failure. A leaf: every layer may import it.

`SourceFailed` is how a source (or the request under it) says why it has no value, with a
short reason for metrics and logs; `Failure` is that reason and message as kept; an
`EnvironmentResult` is one environment's listing, each source's value or failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only a type here: the config is a layer of its own
    from exporter.config.schema import Environment


class SourceFailed(Exception):
    """A source could not produce its result; `reason` is a short code for metrics and logs.

    The message is one line for the log. It may carry upstream text, which the
    failure log cleans (length, characters, configured keys) before writing it.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Failure:
    """Why one source of one environment did not produce a result."""

    reason: str
    message: str
    traceback: str | None = None  # only for `internal`


@dataclass(frozen=True, slots=True)
class EnvironmentResult:
    """One environment's listing: each source's value or failure.

    `success` is whether the primary source (the work listing) produced its value.
    `pending` marks an environment not listed yet (background mode, before its first
    listing ends): it is reported as neither a success nor a failure.
    """

    environment: Environment
    duration_seconds: float
    finished_at: float  # Unix seconds
    values: Mapping[str, Any] = field(default_factory=dict)
    failures: Mapping[str, Failure] = field(default_factory=dict)
    success: bool = False
    pending: bool = False
