"""RFC 3339 parsing, the listing page shape, and what a hostile body cannot do."""

from __future__ import annotations

import json

import pytest

from exporter.api.codec import (
    MAX_CURSOR_LENGTH,
    QueueStats,
    UpstreamFormatError,
    WorkItem,
    parse_environments_page,
    parse_stats,
    parse_timestamp,
    parse_work_page,
)


def parse_page(doc) -> tuple:
    return parse_work_page(json.dumps(doc).encode())


BASE = 1795348800.0  # 2026-11-22T12:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T12:00:00Z", BASE),
        ("2026-11-22t12:00:00z", BASE),
        ("2026-11-22 12:00:00Z", BASE),
        ("2026-11-22T12:00:00.5Z", BASE + 0.5),
        ("2026-11-22T12:00:00.123456Z", BASE + 0.123456),
        ("2026-11-22T12:00:00.123456789Z", BASE + 0.123457),  # rounded to the microsecond
        ("2026-11-22T12:00:00.1234567890Z", BASE + 0.123457),
        ("2026-11-22T13:30:00+01:30", BASE),
        ("2026-11-22T10:00:00.250-02:00", BASE + 0.25),
        ("2026-11-22T12:00:00+00:00", BASE),
        ("1970-01-01T00:00:00Z", 0.0),
        ("9999-12-31T23:59:59Z", 253402300799.0),
        ("9999-12-31T23:59:59.999999Z", 253402300799.999999),  # the range's last microsecond
        ("2016-12-31T23:59:60Z", 1483228800.0),  # a leap second: the next minute's first instant
        ("2016-12-31T23:59:60.25Z", 1483228800.25),
        ("2017-01-01T00:59:60+01:00", 1483228800.0),  # the same leap second, in another zone
    ],
)
def test_rfc3339_timestamps(text, expected):
    assert parse_timestamp(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "text",
    [
        None,
        17,
        "",
        "acknowledged_at",
        "2026-11-22T12:00:00",  # no offset: not RFC 3339
        "2026-11-22",
        "2026-02-30T12:00:00Z",
        "2026-11-22T24:00:00Z",
        "2026-11-22T12:00:00+25:00",
        " 2026-11-22T12:00:00Z",
        "0001-01-01T00:00:00Z",  # would be an age of 6e10 seconds
        "0000-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "9999-12-31T23:00:00-02:00",  # past the year 9999 in UTC
        "2026-13-01T00:00:00Z",
        "2026-11-22T12:00:61Z",  # no second 61
        "2026-11-22T12:60:00Z",
        "2026-11-22T12:00:60",  # a leap second still needs its offset
        "9999-12-31T23:59:60Z",  # past the range
    ],
)
def test_unparseable_timestamps_are_none(text):
    assert parse_timestamp(text) is None


def test_page_keeps_only_what_metrics_need():
    body = {
        "data": [
            {
                "id": "work_1",
                "state": "active",
                "created_at": "2026-11-22T11:00:00Z",
                "acknowledged_at": "2026-11-22T11:30:00Z",
                "started_at": "2026-11-22T12:00:00Z",
                "stop_requested_at": None,
                "latest_heartbeat_at": None,
                "secret": "s3cret",
                "metadata": {"team": "search", "other": "x"},
                "data": {"id": "session_1", "type": "session"},
            }
        ],
        "next_page": "cur",
    }
    page = parse_work_page(json.dumps(body).encode(), ("team", "tier"))
    assert page == (
        [
            WorkItem(
                id="work_1",
                state="active",
                events=(BASE - 3600, BASE - 1800, BASE, None, None),
                latest_heartbeat=None,
                unparseable=(),
                labels=("search", None),
                session="session_1",
            )
        ],
        "cur",
    )
    assert page.items[0].state_since == BASE
    assert "s3cret" not in repr(page) and "other" not in repr(page)


@pytest.mark.parametrize(
    ("data", "session"),
    [
        ({"id": "sesn_1", "type": "session"}, "sesn_1"),
        ({"type": "healthcheck"}, None),
        (None, None),
        ({"id": 7}, None),
        ({"id": "s\ud800"}, None),
        ({"id": "x" * 300}, None),
        (["not", "an", "object"], None),
    ],
)
def test_the_session_id_is_kept_when_it_is_usable_and_costs_the_item_nothing_when_not(data, session):
    body = json.dumps({"data": [{"id": "w1", "state": "active", "data": data}]}).encode()
    (item,) = parse_work_page(body).items
    assert (item.id, item.state, item.session) == ("w1", "active", session)


def test_health_check_work_is_work_like_any_other():
    body = {
        "data": [
            {
                "id": "work_h",
                "state": "queued",
                "created_at": "2026-11-22T12:00:00Z",
                "data": {"type": "healthcheck"},
            },
            {
                "id": "work_x",
                "state": "queued",
                "created_at": "2026-11-22T12:00:00Z",
                "data": {"type": "novel"},
            },
        ],
        "next_page": None,
    }
    assert [i.id for i in parse_page(body).items] == ["work_h", "work_x"]


@pytest.mark.parametrize("cursor", [None, ""])
def test_null_or_empty_next_page_ends_the_listing(cursor):
    assert parse_page({"data": [], "next_page": cursor}).next_page is None


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"data": None},
        {"data": {}},
        {"data": [{"id": "work_1"}]},
        {"data": [3]},
        {"data": [], "next_page": 7},
        {"data": [{"id": "w", "state": "x" * 65}]},
        {"data": [{"state": "queued"}]},
        {"data": [{"id": 7, "state": "queued"}]},
        {"data": [], "next_page": "c" * (MAX_CURSOR_LENGTH + 1)},
        "<html>",
    ],
)
def test_foreign_bodies_are_format_errors(body):
    with pytest.raises(UpstreamFormatError):
        parse_page(body)


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'{"data": [', b"\xff\xfe\x00", b"", b"<html>"],
    ids=["nested-100000-deep", "truncated", "not-utf8", "empty", "html"],
)
def test_undecodable_bodies_are_format_errors_never_anything_else(body):
    with pytest.raises(UpstreamFormatError):
        parse_work_page(body)


def test_garbled_timestamps_are_told_from_null_ones():
    (garbled, null) = parse_page(
        {
            "data": [
                {
                    "id": "w1",
                    "state": "queued",
                    "created_at": "yesterday",
                    "latest_heartbeat_at": "2026-13-01T00:00:00Z",
                },
                {"id": "w2", "state": "queued", "created_at": None, "latest_heartbeat_at": None},
            ],
            "next_page": None,
        }
    ).items
    assert garbled.unparseable == ("created_at", "latest_heartbeat_at")
    assert null.unparseable == ()


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {"depth": 3, "pending": 1, "oldest_queued_at": "2026-11-22T12:00:00Z", "workers_polling": 4},
            QueueStats(3, 1, BASE, False, 4),
        ),
        (
            {"depth": 0, "pending": 0, "oldest_queued_at": None, "workers_polling": None},
            QueueStats(0, 0, None, False, None),
        ),
        ({"depth": 0, "pending": 0}, QueueStats(0, 0, None, False, None)),
        ({"depth": 1, "pending": 0, "oldest_queued_at": "soon"}, QueueStats(1, 0, None, True, None)),
    ],
)
def test_queue_stats(doc, expected):
    assert parse_stats(json.dumps({"type": "work_queue_stats", **doc}).encode()) == expected


@pytest.mark.parametrize(
    "doc",
    [
        {"depth": -1, "pending": 0},
        {"depth": True, "pending": 0},
        {"depth": 1},
        {"depth": 1, "pending": 0, "workers_polling": "2"},
        [],
    ],
)
def test_malformed_queue_stats_are_format_errors(doc):
    with pytest.raises(UpstreamFormatError):
        parse_stats(json.dumps(doc).encode())


def test_a_page_with_one_garbled_timestamp_is_read_whole_by_the_tolerant_path():
    """The typed decoder refuses the page; the tolerant path keeps every item and loses one field."""
    good = {
        "id": "w1",
        "state": "active",
        "created_at": "2026-11-22T11:00:00Z",
        "started_at": "2026-11-22T12:00:00Z",
    }
    bad = {"id": "w2", "state": "queued", "created_at": "yesterday"}
    naive = {"id": "w3", "state": "queued", "created_at": "2026-11-22T12:00:00"}  # no offset
    ancient = {"id": "w4", "state": "queued", "created_at": "0001-01-01T00:00:00Z"}
    page = parse_page({"data": [good, bad, naive, ancient], "next_page": None})
    assert [(i.id, i.events[0], i.unparseable) for i in page.items] == [
        ("w1", BASE - 3600, ()),
        ("w2", None, ("created_at",)),
        ("w3", None, ("created_at",)),
        ("w4", None, ("created_at",)),
    ]
    assert page.items[0].state_since == BASE


@pytest.mark.parametrize(
    "created",
    ["2026-11-22T12:00:00Z", "2026-11-22t12:00:00z", "2026-11-22 12:00:00Z", "2026-11-22T13:30:00+01:30"],
)
def test_both_decoding_paths_read_a_timestamp_the_same(created):
    """A good page goes through msgspec; the same item beside a garbled one goes the tolerant way."""
    item = {"id": "w1", "state": "queued", "created_at": created, "metadata": {"team": "x"}}
    typed = parse_work_page(json.dumps({"data": [item]}).encode(), ("team",)).items[0]
    garbled = {"id": "w2", "state": "queued", "created_at": "never"}
    tolerant = parse_work_page(json.dumps({"data": [item, garbled]}).encode(), ("team",)).items[0]
    assert typed == tolerant == WorkItem("w1", "queued", (BASE, None, None, None, None), None, (), ("x",))


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("prod-sandboxes", "prod-sandboxes"),
        ("équipe données", "équipe données"),
        ("sandbox\rts=2026 level=info msg=forged", "env_a"),  # a control character: the id instead
        ("sandbox\x1b[2K", "env_a"),
        ("a\u2028b", "env_a"),  # a line separator
        ("right\u202eleft", "env_a"),  # a bidirectional override
        ("", "env_a"),
        (17, "env_a"),
    ],
)
def test_a_discovered_name_is_printable_text_or_the_id(name, shown):
    body = {"data": [{"id": "env_a", "name": name, "config": {"type": "self_hosted"}, "archived_at": None}]}
    (listed,) = parse_environments_page(json.dumps(body).encode()).environments
    assert listed.name == shown
