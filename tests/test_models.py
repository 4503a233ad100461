"""RFC 3339 parsing and the listing page shape."""

from __future__ import annotations

import pytest

from exporter.models import UpstreamFormatError, WorkItem, parse_page, parse_timestamp

BASE = 1795348800.0  # 2026-11-22T12:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T12:00:00Z", BASE),
        ("2026-11-22t12:00:00z", BASE),
        ("2026-11-22 12:00:00Z", BASE),
        ("2026-11-22T12:00:00.5Z", BASE + 0.5),
        ("2026-11-22T12:00:00.123456Z", BASE + 0.123456),
        ("2026-11-22T12:00:00.123456789Z", BASE + 0.123456789),
        ("2026-11-22T13:30:00+01:30", BASE),
        ("2026-11-22T10:00:00.250-02:00", BASE + 0.25),
        ("2026-11-22T12:00:00+00:00", BASE),
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
        "2026-11-22T12:00:00.1234567890Z",
        "2026-02-30T12:00:00Z",
        "2026-11-22T24:00:00Z",
        "2026-11-22T12:00:00+25:00",
        " 2026-11-22T12:00:00Z",
    ],
)
def test_unparseable_timestamps_are_none(text):
    assert parse_timestamp(text) is None


def test_page_keeps_only_what_metrics_need():
    body = {
        "data": [
            {
                "state": "active",
                "started_at": "2026-11-22T12:00:00Z",
                "latest_heartbeat_at": None,
                "secret": "s3cret",
                "metadata": {"a": "b"},
            }
        ],
        "next_page": "cur",
    }
    page = parse_page(body)
    assert page == (
        [WorkItem(state="active", state_since=BASE, latest_heartbeat=None, heartbeat_unparseable=False)],
        "cur",
    )
    assert "s3cret" not in repr(page)


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
        "<html>",
    ],
)
def test_foreign_bodies_are_format_errors(body):
    with pytest.raises(UpstreamFormatError):
        parse_page(body)
