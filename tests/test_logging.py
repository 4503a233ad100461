"""Log lines: logfmt and JSON, one per failing environment, repeats rate-limited."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from conftest import FakeClock
from hypothesis import example, given
from hypothesis import strategies as st

from exporter.config.keys import Secret
from exporter.config.schema import Credentials, Environment
from exporter.logs import setup_logging
from exporter.redact import Redactor
from exporter.results import Failure
from exporter.running.failures import FailureLog

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


def test_a_failure_episode_is_one_line_and_its_recovery_one_more_with_the_reasons_summarised(log_stream):
    """A flapping failure (500, 502, 503 in turn, for ten minutes): one line when it starts, none while
    it flaps, one when it recovers, counting what was seen."""
    clock = FakeClock()
    failures = FailureLog(quiet_seconds=300, clock=clock)
    for n in range(60):
        status = (500, 502, 503)[n % 3]
        failures.failed(ENV, "work", Failure(f"http_{status}", f"HTTP {status} api_error: down"))
        clock.now += 10
    assert len(lines(log_stream)) == 1
    failures.succeeded(ENV, "work")
    failures.succeeded(ENV, "work")  # no episode to end: nothing
    first, recovered = lines(log_stream)
    assert 'msg="listing work failed"' in first and "reason=http_500" in first
    assert 'msg="listing work recovered"' in recovered and "environment_id=env_a" in recovered
    assert "failures=60 reasons=http_500:20,http_502:20,http_503:20 failing_seconds=600.0" in recovered


def test_an_episode_of_a_step_that_never_succeeds_ends_after_a_quiet_interval(log_stream):
    clock = FakeClock()
    failures = FailureLog(quiet_seconds=300, clock=clock)
    failures.failed(ENV, "render", Failure("internal", "KeyError: 'x'", "Traceback ..."))
    clock.now += 299
    failures.failed(ENV, "render", Failure("internal", "KeyError: 'x'", "Traceback ..."))
    assert len(lines(log_stream)) == 1
    clock.now += 301  # quiet for longer than 300 s: a new episode
    failures.failed(ENV, "render", Failure("internal", "KeyError: 'x'", "Traceback ..."))
    assert len(lines(log_stream)) == 2


def test_our_own_bug_inside_an_episode_still_logs_its_traceback_once(log_stream):
    failures = FailureLog(clock=FakeClock())
    failures.failed(ENV, "work", Failure("http_503", "HTTP 503"))
    failures.failed(ENV, "work", Failure("internal", "KeyError: 'x'", "Traceback: one"))
    failures.failed(ENV, "work", Failure("internal", "KeyError: 'x'", "Traceback: two"))
    out = lines(log_stream)
    assert len(out) == 2 and "reason=http_503" in out[0]
    assert 'traceback="Traceback: one"' in out[1]


def test_sources_have_episodes_of_their_own(log_stream):
    """A stats 403 that lasts never hides a listing failure that starts later."""
    failures = FailureLog(clock=FakeClock())
    failures.failed(ENV, "stats", Failure("http_403", "HTTP 403"))
    failures.failed(ENV, "work", Failure("http_401", "HTTP 401"))
    out = lines(log_stream)
    assert len(out) == 2 and "source=stats" in out[0] and "source=work" in out[1]


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


CONTROL = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, 0x202E, 0x2066)]


def log_line(fmt: str, value: str) -> str:
    stream = io.StringIO()
    setup_logging("info", fmt, stream)
    try:
        logging.getLogger("exporter.test").warning(value, extra={"error": value})
    finally:
        logging.getLogger().handlers.clear()
    return stream.getvalue()


@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=40))
@example("sandbox\r\x1b[2Kts=2026-12-06T00:00:00Z level=info msg=forged")
@example("a\u2028b\x85c\x7fd")
def test_no_value_can_forge_a_log_line_in_either_format(value):
    """Whatever a value holds, the line is one line with no control character, and reads back exact."""
    for fmt in ("logfmt", "json"):
        out = log_line(fmt, value)
        assert out.endswith("\n") and out.count("\n") == 1
        line = out[:-1]
        assert not any(c in line for c in CONTROL), (fmt, line)
        if fmt == "json":
            doc = json.loads(line)
            assert doc["msg"] == doc["error"] == value
        else:
            field = line.rsplit(" error=", 1)[1]  # the last field: nothing after it to mistake
            assert (json.loads(field) if field.startswith('"') else field) == value
