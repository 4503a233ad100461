"""The one boundary where an exception in one environment's step becomes that environment's failure.

Every per-environment step runs inside it: fetching, parsing and folding each source
(the engine), committing transitions (the work source, inside its collect), rendering
(the exposition), hashing into a shard and reading keys (targets), and each scheduled
turn (the background policy). Whatever such a step raises that it did not mean to
(`SourceFailed` is meant, and handled by the engine) is the exporter's own bug: it
becomes reason `internal` for that environment, logged once with its traceback by the
`FailureLog`, scrubbed of every known key, and never reaches the HTTP response or stops
the other environments.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import TypeVar

from exporter.config.schema import Environment
from exporter.redact import Redactor
from exporter.results import Failure
from exporter.running.failures import FailureLog

T = TypeVar("T")


def internal_failure(exc: BaseException, redactor: Redactor) -> Failure:
    """Reason `internal`: the exception in one line and its traceback, both without any key."""
    where = "".join(traceback.format_exception(exc))
    return Failure("internal", redactor.clean(f"{type(exc).__name__}: {exc}"), redactor.redact(where))


class Boundary:
    """Runs one environment's step; an unexpected exception becomes its `internal` failure, logged once."""

    def __init__(self, failures: FailureLog, redactor: Redactor):
        self.failures = failures
        self.redactor = redactor

    def failure(self, env: Environment, step: str, exc: BaseException) -> Failure:
        """Turn `exc`, raised by `step` of `env`, into its failure and log it (once per kind)."""
        failure = internal_failure(exc, self.redactor)
        self.failures.failed(env, step, failure, what=f"{step} failed")
        return failure

    def run(self, env: Environment, step: str, fn: Callable[[], T]) -> T | Failure:
        """`fn()`, or the Failure it became."""
        try:
            return fn()
        except Exception as exc:  # the exporter's own bug in this environment's step, and only there
            return self.failure(env, step, exc)
