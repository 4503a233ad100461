"""Property tests of every boundary where values enter: decoders, config loaders, HTTP requests, and the
whole pipeline against a loopback upstream that answers generated pages.

Invariants: nothing escapes a step but its documented error; what a decoder returns is
valid text and finite numbers in range; `/metrics` answers 200 and parses; the other
environments' numbers stay exact; no key in any log. CI runs the `ci` profile (a fixed,
derandomized budget, `tests/conftest.py`); `HYPOTHESIS_PROFILE=long` searches longer.
"""

from __future__ import annotations

import calendar
import contextlib
import io
import json
import logging
import math
import socket
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml
from conftest import page, work
from fake_upstream import fake_upstream
from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from upstream import running_exporter

from exporter.api.codec import (
    EVENT_FIELDS,
    MAX_COUNT,
    MAX_CURSOR_LENGTH,
    UpstreamFormatError,
    parse_environments_page,
    parse_stats,
    parse_timestamp,
    parse_work_page,
)
from exporter.config.load import parse_config
from exporter.config.vocabulary import environment_id_problem
from exporter.config.yamldoc import ConfigError
from exporter.logs import LogfmtFormatter
from exporter.web.auth import load_web_config

KEY = "sk-fuzz-environment-key-0123456789"

# Text with everything JSON can carry, lone surrogates included (json.dumps escapes them).
any_text = st.text(st.characters(exclude_categories=()), max_size=20)
stamps = st.one_of(
    any_text,
    st.from_regex(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d{1,12})?([Zz]|[+-]\d\d:?\d\d)?", fullmatch=True),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    any_text,
    stamps,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["id", "state", *EVENT_FIELDS, "latest_heartbeat_at", "metadata", "data", "secret", "type"]
items = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=10),
    st.fixed_dictionaries(
        {"id": any_text, "state": st.sampled_from(["queued", "active", "stopped"]) | any_text},
        optional={f: stamps | st.none() for f in ["created_at", "started_at", "latest_heartbeat_at"]}
        | {"metadata": st.dictionaries(st.just("team") | any_text, json_values, max_size=3)},
    ),
    json_values,
)
pages = st.fixed_dictionaries(
    {"data": st.lists(items, max_size=6)}, optional={"next_page": st.none() | any_text | json_values}
)


def encoded(doc: object) -> bytes:
    return json.dumps(doc).encode()


def is_text(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


@given(st.one_of(pages.map(encoded), json_values.map(encoded), st.binary(max_size=200)))
@example(b'{"data": [{"id": "w", "state": "queued", "metadata": ' + b"[" * 5000 + b"]" * 5000 + b"}]}")
@example(b'{"data": [{"id": "bad\\ud800", "state": "queued"}]}')
@example(b'{"data": [], "next_page": "\\udfff"}')
def test_a_work_page_is_a_page_of_valid_values_or_a_format_error(body):
    try:
        result = parse_work_page(body, ("team",))
    except UpstreamFormatError:
        return
    assert result.next_page is None or (
        is_text(result.next_page) and len(result.next_page) <= MAX_CURSOR_LENGTH
    )
    for item in result.items:
        assert is_text(item.id) and is_text(item.state)
        assert all(label is None or is_text(label) for label in item.labels)
        for stamp in (*item.events, item.latest_heartbeat):
            assert stamp is None or (math.isfinite(stamp) and 0 <= stamp <= 253402300800)


@given(stamps)
@example("2026-11-22T12:00:00.1234567890Z")
@example("2026-11-22T12:00:00+0100")
def test_both_decoding_paths_read_every_timestamp_alike(text):
    """The typed path (msgspec structs) and the tolerant one (a garbled neighbour forces it)."""
    item = {"id": "w1", "state": "queued", "created_at": text}
    typed = parse_work_page(encoded({"data": [item]})).items[0]
    tolerant = parse_work_page(encoded({"data": [item, {"id": "w2", "state": "queued", "created_at": 1}]}))
    assert typed.events[0] == tolerant.items[0].events[0] == parse_timestamp(text)
    assert (typed.events[0] is None) == ("created_at" in tolerant.items[0].unparseable) or text is None


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LAST_MICROSECOND = 253402300800 * 10**6 - 1  # 9999-12-31T23:59:59.999999Z


@st.composite
def rfc3339(draw) -> tuple[str, float | None]:
    """An RFC 3339 date-time (leap seconds, any fraction, any offset) and, worked out independently
    with datetime arithmetic and whole microseconds, the Unix time it names, or None when that lies
    outside 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z."""
    year = draw(st.integers(1960, 9999))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, calendar.monthrange(year, month)[1]))
    hour, minute, second = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 60))
    digits = draw(st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=9)))
    if draw(st.booleans()):
        zone, offset = draw(st.sampled_from("Zz")), timedelta(0)
    else:
        sign, hours, minutes = draw(st.sampled_from("+-")), draw(st.integers(0, 23)), draw(st.integers(0, 59))
        zone = f"{sign}{hours:02d}:{minutes:02d}"
        offset = (1 if sign == "+" else -1) * timedelta(hours=hours, minutes=minutes)
    separator = draw(st.sampled_from("Tt "))
    fraction = f".{digits}" if digits else ""
    text = f"{year:04d}-{month:02d}-{day:02d}{separator}{hour:02d}:{minute:02d}:{second:02d}{fraction}{zone}"
    # Second 60 is the first instant of the next minute; the fraction is rounded half up to the µs.
    local = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=timezone(offset))
    micros = (local - EPOCH) // timedelta(microseconds=1) + (10**6 if second == 60 else 0)
    if digits:
        scale = 10 ** len(digits)
        micros += (int(digits) * 10**6 * 2 + scale) // (2 * scale)
    return text, (micros / 10**6 if 0 <= micros <= LAST_MICROSECOND else None)


@given(rfc3339())
@example(("2026-12-31T23:59:60Z", 1798761600.0))
@example(("2016-12-31T23:59:60.5+00:00", 1483228800.5))
@example(("9999-12-31T23:59:59.999999Z", 253402300800.0))
@example(("9999-12-31T23:59:59.9999995Z", None))  # rounds up into the year 10000
@example(("9999-12-31T23:00:00-01:00", None))
@example(("1970-01-01T00:00:00+00:01", None))
@example(("1969-12-31T23:59:59.9999995Z", 0.0))
def test_every_rfc3339_date_time_parses_to_the_instant_datetime_arithmetic_gives(case):
    """On both decoding paths: the one grammar, checked against an independent reference."""
    text, expected = case
    assert parse_timestamp(text) == expected
    item = {"id": "w1", "state": "queued", "created_at": text}
    typed = parse_work_page(encoded({"data": [item]})).items[0]
    assert typed.events[0] == expected


@given(
    st.one_of(
        st.dictionaries(
            st.sampled_from(["depth", "pending", "workers_polling", "oldest_queued_at"]),
            json_values | st.integers(min_value=-(10**30), max_value=10**400),
        ).map(encoded),
        st.binary(max_size=100),
    )
)
@example(b'{"depth": 1' + b"0" * 400 + b', "pending": 0}')
def test_queue_statistics_are_exact_counts_or_a_format_error(body):
    try:
        stats = parse_stats(body)
    except UpstreamFormatError:
        return
    for count in (stats.depth, stats.pending, stats.workers_polling):
        assert count is None or (type(count) is int and 0 <= count <= MAX_COUNT and float(count) == count)


@given(
    st.fixed_dictionaries(
        {
            "data": st.lists(
                st.dictionaries(st.sampled_from(["id", "name", "config", "archived_at"]), json_values)
                | st.builds(lambda i, n: {"id": i, "name": n}, any_text, any_text),
                max_size=6,
            )
        },
        optional={"next_page": st.none() | any_text},
    ).map(encoded)
    | st.binary(max_size=100)
)
def test_discovery_yields_only_safe_ids_and_text_names(body):
    try:
        result = parse_environments_page(body)
    except UpstreamFormatError:
        return
    for env in result.environments:
        assert environment_id_problem(env.id) is None and is_text(env.name)


# -- configs -----------------------------------------------------------------------------

section_values = st.one_of(json_values, st.sampled_from(["key.txt", "missing.txt", ".", "big.txt"]))
credentials = st.dictionaries(
    st.sampled_from(["type", "value_env", "value_file", "other"]),
    st.sampled_from(["environment_key", "api_key", "KEY", "NOPE", "key.txt", "big.txt", "missing.txt"])
    | json_values,
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "api": st.dictionaries(
            st.sampled_from(
                [
                    "base_url",
                    "page_size",
                    "max_pages",
                    "request_timeout_seconds",
                    "credentials",
                    "betas",
                    "anthropic_version",
                    "max_response_bytes",
                    "allow_insecure_http",
                ]
            ),
            section_values | credentials | st.sampled_from(["http://[::1", "https://h:port", "ftp://x"]),
        ),
        "scrape": st.dictionaries(
            st.sampled_from(
                [
                    "mode",
                    "min_interval_seconds",
                    "refresh_interval_seconds",
                    "concurrency",
                    "refresh_timeout_seconds",
                    "clock_skew_seconds",
                ]
            ),
            section_values,
        ),
        "buckets": st.dictionaries(
            st.sampled_from(["heartbeat_age_seconds", "queue_wait_seconds"]), json_values
        ),
        "breakdown": st.dictionaries(st.sampled_from(["metadata_keys", "max_values"]), json_values),
        "discovery": st.dictionaries(
            st.sampled_from(["credentials", "refresh_interval_seconds", "environment_keys_dir"]),
            credentials | section_values,
        ),
        "environments": st.lists(
            st.dictionaries(
                st.sampled_from(["id", "name", "credentials", "workspace_id"]),
                any_text | credentials | json_values,
            )
            | json_values,
            max_size=4,
        )
        | json_values,
    },
)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("files")
    (where / "key.txt").write_text("sk-file-key-0123456789\n")
    (where / "big.txt").write_text("k" * 10_000)
    return where


@given(documents)
def test_the_config_loader_builds_a_config_or_names_the_problems(files, document):
    text = yaml.safe_dump(document, allow_unicode=True)
    try:
        parse_config(text, {"KEY": "sk-env-key-0123456789"}, base_dir=files)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "tls_server_config": st.dictionaries(
                st.sampled_from(
                    [
                        "cert_file",
                        "key_file",
                        "client_ca_file",
                        "client_auth_type",
                        "min_version",
                        "max_version",
                        "other",
                    ]
                ),
                section_values
                | st.sampled_from(["TLS12", "TLS99", "NoClientCert", "RequireAndVerifyClientCert"]),
            )
            | json_values,
            "basic_auth_users": st.dictionaries(
                any_text | st.integers(),
                json_values | st.from_regex(r"\$2[abxy]\$\d\d\$[./A-Za-z0-9]{50,56}", fullmatch=True),
                max_size=3,
            )
            | json_values,
        },
    )
)
def test_the_web_config_loader_builds_or_names_the_problems(files, document):
    path = files / "web.yml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    try:
        load_web_config(path)
    except ConfigError as exc:
        assert exc.problems


# -- the HTTP side and the whole pipeline, over loopback ----------------------------------------

STATS = {"depth": 3, "pending": 0, "oldest_queued_at": None, "workers_polling": 1}
HEALTHY = [work("queued", age=30), work("active", age=100, heartbeat_age=2)]


@pytest.fixture(scope="module")
def exporter():
    """One exporter for every example, over a fake upstream: env_a answers what a test sets."""
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    with fake_upstream() as fake:
        for env_id in ("env_a", "env_b"):
            fake.answer(f"/v1/environments/{env_id}/work", page(HEALTHY))
            fake.answer(f"/v1/environments/{env_id}/work/stats", STATS)
        text = (
            f"api: {{base_url: '{fake.url}', max_retries: 0}}\n"
            "breakdown: {metadata_keys: [team]}\nenvironments: [{id: env_a}, {id: env_b}]\n"
        )
        config = parse_config(text, {"ANTHROPIC_ENVIRONMENT_KEY": KEY})
        with running_exporter(config) as running:
            yield running.address, fake, log
    root.removeHandler(handler)


def raw_request(address: str, request: bytes) -> tuple[int, bytes]:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        with contextlib.suppress(TimeoutError):
            while chunk := sock.recv(65536):
                data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


header_value = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60
)


@settings(max_examples=60)
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "BREW"]),
    path=st.sampled_from(["/metrics", "/probe", "/", "/-/healthy", "/-/ready", "/-/reload", "/x", "//"])
    | st.text(st.sampled_from("/abcmetrics%2F.?-_"), max_size=20).map(lambda p: "/" + p),
    query=st.lists(
        st.tuples(
            st.sampled_from(["environment_id", "name[]", "debug", "x", "env%00"]),
            st.text(st.sampled_from("env_ab%&=+#./ \u00e9"), max_size=12),
        ),
        max_size=3,
    ),
    headers=st.dictionaries(
        st.sampled_from(
            [
                "Accept",
                "Accept-Encoding",
                "Authorization",
                "X-Prometheus-Scrape-Timeout-Seconds",
                "Content-Length",
                "X-Other",
            ]
        ),
        header_value,
        max_size=4,
    ),
)
def test_no_request_gets_a_500_and_every_200_parses(exporter, method, path, query, headers):
    address, _, log = exporter
    qs = "&".join(f"{k}={v}" for k, v in query)
    target = (path + ("?" + qs if qs else "")).replace(" ", "%20").encode("utf-8")
    lines = [
        f"{name}: {value}".encode("latin-1") for name, value in headers.items() if name != "Content-Length"
    ]
    head = b"\r\n".join(
        [method.encode() + b" " + target + b" HTTP/1.1", b"Host: x", b"Connection: close", *lines]
    )
    status, body = raw_request(address, head + b"\r\n\r\n")
    assert status in (200, 400, 401, 404, 405, 406, 422), (status, body[:200])
    plain = b"# EOF" not in body and not body.startswith(b"\x1f\x8b")  # text format, not gzipped
    if status == 200 and method == "GET" and path in ("/metrics", "/probe") and b"# TYPE" in body and plain:
        list(text_string_to_metric_families(body.decode()))
    assert "Traceback" not in log.getvalue() and KEY not in log.getvalue()


unicode_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


@settings(max_examples=100)
@given(
    path=st.sampled_from(["/metrics", "/probe", "/", "/-/healthy", "/-/ready"]),
    values=st.fixed_dictionaries(
        {},
        optional={
            "environment_id": st.one_of(st.just("env_a"), unicode_text),
            "debug": st.one_of(st.sampled_from(["true", "1", "false"]), unicode_text),
            "debug_items": st.one_of(st.sampled_from(["1", "20"]), unicode_text),
            "name[]": st.one_of(st.just("anthropic_work_items"), unicode_text),
            "x": unicode_text,
        },
    ),
    raw=st.booleans(),
)
@example(
    path="/probe", values={"environment_id": "env_a", "debug": "true", "debug_items": "\u00b2"}, raw=False
)
@example(
    path="/probe", values={"environment_id": "env_a", "debug": "true", "debug_items": "\u2460"}, raw=True
)
@example(path="/probe", values={"environment_id": "env_a", "debug": "\u0661"}, raw=False)
def test_any_unicode_in_any_query_parameter_is_never_a_500(exporter, path, values, raw):
    """Each parameter of each endpoint, percent-encoded UTF-8 or raw bytes: a 200 or a 400 naming
    the parameter, never a 500, never a traceback."""
    address, _, log = exporter
    if raw:  # as some clients send it: the UTF-8 bytes unescaped (but the query's own separators)
        query = "&".join(
            f"{k}={v.replace('&', '%26').replace('#', '%23').replace(' ', '%20')}" for k, v in values.items()
        )
        target = (path + "?" + query).encode("utf-8", "surrogatepass")
    else:
        target = (path + "?" + urlencode(values)).encode()
    head = (
        b"GET "
        + target
        + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Prometheus-Scrape-Timeout-Seconds: 5"
    )
    status, body = raw_request(address, head + b"\r\n\r\n")
    assert status in (200, 400, 404), (status, body[:200])
    if status == 400 and b"debug_items" in body:
        assert b"debug_items must be a whole number from 1 to 1000, in ASCII digits" in body
    assert "Traceback" not in log.getvalue()


@settings(max_examples=40)
@given(st.one_of(pages.map(encoded), json_values.map(encoded), st.binary(max_size=120)))
@example(encoded({"data": [{"id": "w\ud800", "state": "queued"}], "next_page": None}))
@example(encoded({"data": [{"id": "w", "state": 'a\nb"c\\'}], "next_page": None}))
def test_whatever_one_environment_answers_the_other_stays_exact(exporter, body):
    address, fake, log = exporter
    fake.routes["/v1/environments/env_a/work"] = lambda: (200, body)
    status, text = raw_request(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }
    b = (("environment_id", "env_b"),)
    assert samples[("anthropic_work_scrape_success", b)] == 1
    assert samples[("anthropic_work_items", (*b, ("state", "queued")))] == 1
    assert samples[("anthropic_work_items", (*b, ("state", "active")))] == 1
    assert samples[("anthropic_work_queue_depth", b)] == 3
    assert samples[("anthropic_work_scrape_success", (("environment_id", "env_a"),))] in (0, 1)
    assert "Traceback" not in log.getvalue() and KEY not in log.getvalue()


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(
    work_id=_text, session=st.none() | _text, state=_text, key=_text, label=_text, name=_text, failure=_text
)
@settings(max_examples=200, deadline=None)
def test_the_html_debug_page_shows_whatever_upstream_sends_as_text_never_as_markup(
    work_id, session, state, key, label, name, failure
):
    """Ids, states, metadata and failure messages come from upstream (and names from the config):
    in the HTML page each is text in its cell, whatever it holds (`<script>`, quotes, `&`)."""
    from htmlpage import Page

    from exporter.config.schema import Environment
    from exporter.folds.work import Noted
    from exporter.web import debug, pages

    noted = Noted(0.0, work_id, session, state, (("heartbeat", 120.0),), ((key, label),))
    section = debug.Section("stale-heartbeat", "Heartbeat older than 90 s", 1, [noted], "")
    report = debug.Report(
        Environment("env_a", name),
        "listing ended",
        [("queued", 1)],
        "",
        [section],
        [f"GET /v1/x -> 500, failed: {failure}"],
        [("work", f"failed, http_500: {failure}")],
        "anthropic_work_items 1.0\n",
        [("name", name)],
        50.0,
    )
    page = Page(debug.page(report, pages.Links()))
    (row,) = page.table("items").records()
    assert row["work id"].text == work_id
    assert row["session id"].text == (session or "-")  # none, or empty: shown as -
    assert row["state"].text == state
    assert row["metadata"].text == f"{key}={label}"
    scripts = [t for t in page.tables for r in t.rows for c in r for i in c.inner if i["tag"] == "script"]
    assert scripts == []
    assert "<script" not in debug.page(report, pages.Links()).replace("&lt;script", "")
