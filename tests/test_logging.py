"""Log lines: logfmt and JSON, one per failing environment, repeats rate-limited."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from conftest import FakeClock

from exporter.config import Credentials, Environment, Secret
from exporter.failures import Failure, FailureLog
from exporter.logs import setup_logging
from exporter.redact import Redactor

ENV = Environment("env_a", "prod", Credentials("api_key", Secret("k"), "test"))


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_logfmt_quotes_values_that_need_it(log_stream):
    logging.getLogger("exporter.test").warning(
        "listing work failed", extra={"environment_id": "env_a", "error": 'HTTP 401 "bad"'}
    )
    (line,) = lines(log_stream)
    assert line.startswith("ts=")
    assert line.endswith(
        ' level=warn logger=exporter.test msg="listing work failed" environment_id=env_a '
        'error="HTTP 401 \\"bad\\""'
    )


def test_json_format():
    stream = io.StringIO()
    setup_logging("debug", "json", stream)
    logging.getLogger("exporter.test").info("hello", extra={"environment_id": "env_a"})
    logging.getLogger().handlers.clear()
    doc = json.loads(stream.getvalue())
    assert {k: doc[k] for k in ("level", "logger", "msg", "environment_id")} == {
        "level": "info",
        "logger": "exporter.test",
        "msg": "hello",
        "environment_id": "env_a",
    }


def test_level_filters(log_stream):
    logging.getLogger("exporter.test").debug("hidden")
    assert lines(log_stream) == []


def test_repeated_failures_are_logged_once_per_interval_with_a_count(log_stream):
    clock = FakeClock()
    failures = FailureLog(repeat_seconds=300, clock=clock)
    unauthorized = Failure("http_401", "HTTP 401 authentication_error: no")
    for _ in range(5):
        failures.failed(ENV, "work", unauthorized)
        clock.now += 30
    assert len(lines(log_stream)) == 1
    clock.now += 200  # 350 s after the first line
    failures.failed(ENV, "work", unauthorized)
    assert len(lines(log_stream)) == 2
    assert "repeated=4" in lines(log_stream)[1]


def test_a_new_kind_of_failure_is_logged_at_once_and_recovery_once(log_stream):
    clock = FakeClock()
    failures = FailureLog(repeat_seconds=300, clock=clock)
    failures.failed(ENV, "work", Failure("http_401", "a"))
    failures.failed(ENV, "work", Failure("timeout", "b"))
    failures.succeeded(ENV, "work")
    failures.succeeded(ENV, "work")
    out = lines(log_stream)
    assert len(out) == 3
    assert "reason=http_401" in out[0] and "reason=timeout" in out[1]
    assert 'msg="listing work recovered"' in out[2] and "environment_id=env_a" in out[2]


def test_a_traceback_is_one_logfmt_line(log_stream):
    FailureLog().failed(ENV, "work", Failure("internal", "KeyError: 'x'", "Traceback:\n  line 1\nKeyError"))
    (line,) = lines(log_stream)
    assert 'traceback="Traceback:\\n  line 1\\nKeyError"' in line


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("invalid key sk-live-123 for sk-live-123", 300, "invalid key [REDACTED] for [REDACTED]"),
        ("key sk-live-12345 (a longer one)", 300, "key [REDACTED] (a longer one)"),
        ("line\nbreak\x1b[31m and \u00e9", 300, "line?break?[31m and ?"),
        ("x" * 50, 10, "xxxxxxx..."),
        # Replaced before it is cut: half a key never survives.
        ("sk-live-123 then more", 8, "[REDA..."),
    ],
)
def test_upstream_text_is_cleaned_before_it_is_logged(text, limit, expected):
    assert Redactor(["sk-live-123", "sk-live-12345"]).clean(text, limit) == expected


@pytest.mark.parametrize(
    ("keys", "text", "expected"),
    [
        (["sk-ant-api03-aaaaaaaa", "sk-ant-api03-bbbbbbbb"], "a sk-ant-api03-bbbbbbbb b", "a [REDACTED] b"),
        (["abc"], "abcabc xabc", "[REDACTED][REDACTED] x[REDACTED]"),  # short keys too
        (["0123456789", "456789ABCDEF"], "0123456789ABCDEF", "[REDACTED]"),  # overlapping: one span
        (["sk-long-key-0123456789", "key-0123456789"], "=sk-long-key-0123456789=", "=[REDACTED]="),
        (["k" * 4096], "x" + "k" * 4096 + "y", "x[REDACTED]y"),
    ],
)
def test_every_known_key_is_replaced_wherever_it_stands(keys, text, expected):
    assert Redactor(keys).redact(text) == expected


def test_redaction_costs_time_linear_in_the_text_whatever_the_keys():
    """20,000 keys sharing their first 13 characters, as real keys do, and a 1 MB traceback: well under
    a second (one regex of every key took 11 s to build for a single 10 MB key, and grew per key)."""
    redactor = Redactor()
    keys = [f"sk-ant-api03-{n:040d}" for n in range(20_000)]
    started = time.perf_counter()
    for key in keys:
        redactor.add(key)
    text = ("Traceback line with nothing secret in it " * 25_000) + keys[12_345]
    redacted = redactor.redact(text)
    assert time.perf_counter() - started < 5  # about 0.5 s here; quadratic would be hours
    assert redacted.endswith("[REDACTED]") and keys[12_345] not in redacted
