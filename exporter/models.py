"""The upstream API's shapes: the only module that knows its JSON field names.

A listing page is `{"data": [work, ...], "next_page": cursor | null}`. Of each
work item only the state and the timestamps the metrics need are kept; the
`secret` field (a credential payload) and everything else are never read.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, NamedTuple

KNOWN_STATES = ("queued", "starting", "active", "stopping", "stopped")
# States whose workers heartbeat, and the timestamp each state's age runs from.
HEARTBEAT_STATES = ("starting", "active", "stopping")
STATE_SINCE_FIELD = {
    "queued": "created_at",
    "starting": "acknowledged_at",
    "active": "started_at",
    "stopping": "stop_requested_at",
}


class UpstreamFormatError(ValueError):
    """A response that is not a listing page of the documented shape."""


class WorkItem(NamedTuple):
    """What the metrics need of one work item; timestamps are Unix seconds or None.

    `state_since` is when the item entered its current state (None when the
    state has no age, the field is null, or it cannot be parsed);
    `heartbeat_unparseable` tells a null heartbeat from a garbled one.
    """

    state: str
    state_since: float | None
    latest_heartbeat: float | None
    heartbeat_unparseable: bool


class Page(NamedTuple):
    items: list[WorkItem]
    next_page: str | None


def parse_page(body: Any) -> Page:
    """Turn a decoded JSON listing page into WorkItems and the next cursor."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise UpstreamFormatError("response is not a work listing (no 'data' list)")
    cursor = body.get("next_page")
    if cursor is not None and not isinstance(cursor, str):
        raise UpstreamFormatError("'next_page' is neither a string nor null")
    items = []
    for raw in body["data"]:
        if not isinstance(raw, dict) or not isinstance(raw.get("state"), str):
            raise UpstreamFormatError("a work item has no 'state' string")
        state = raw["state"]
        since_field = STATE_SINCE_FIELD.get(state)
        since = parse_timestamp(raw.get(since_field)) if since_field else None
        heartbeat_raw = raw.get("latest_heartbeat_at")
        heartbeat = parse_timestamp(heartbeat_raw)
        items.append(WorkItem(state, since, heartbeat, heartbeat_raw is not None and heartbeat is None))
    return Page(items, cursor or None)


def parse_error(body: Any) -> tuple[str, str]:
    """The API error body's (type, message), or empty strings for another shape."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return str(err.get("type", "")), str(err.get("message", ""))
    return "", ""


# RFC 3339 date-time: T (or t, or space as RFC 3339 section 5.6 permits), up to 9
# fraction digits, Z/z or a numeric offset. The regex is the strictness (no dates
# alone, no missing offset, no week dates); datetime.fromisoformat, in C, does the
# calendar arithmetic and rejects month 13, hour 24, second 60, offset +25:00.
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d([Tt ])\d\d:\d\d:\d\d(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)")


def parse_timestamp(value: Any) -> float | None:
    """RFC 3339 string to Unix seconds; None for null or anything unparseable.

    Fraction digits past the sixth (nanoseconds) are dropped: a float of Unix
    seconds cannot hold them anyway.
    """
    if not isinstance(value, str):
        return None
    m = _RFC3339.fullmatch(value)
    if m is None:
        return None
    separator, fraction, zone = m.groups()
    if separator != "T" or zone == "z" or (fraction is not None and len(fraction) > 6):
        # The rare spellings fromisoformat does not take: rewrite them in the common one.
        value = (
            f"{value[:10]}T{value[11:19]}"
            + (f".{fraction[:6]}" if fraction else "")
            + ("Z" if zone in "Zz" else zone)
        )
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:  # a calendar or clock value out of range
        return None
