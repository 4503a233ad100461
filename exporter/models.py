"""The upstream API's shapes: the only module that knows its paths, headers and JSON field names.

A listing page is `{"data": [work, ...], "next_page": cursor | null}`. Of each
work item only the state and the timestamps the metrics need are kept; the
`secret` field (a credential payload) and everything else are never read.

Decoding is defensive: whatever bytes arrive, `parse_work_page` either returns
a `Page` or raises `UpstreamFormatError` (never RecursionError, never a
KeyError), and a cursor longer than `MAX_CURSOR_LENGTH` is refused before it
can reach a URL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import quote

# -- requests --------------------------------------------------------------------

VERSION_HEADER = "anthropic-version"
BETA_HEADER = "anthropic-beta"
WORKSPACE_HEADER = "anthropic-workspace-id"
MANAGED_AGENTS_BETA = "managed-agents-2026-04-01"
DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
# What each credential kind is sent as.
CREDENTIAL_TYPES = ("environment_key", "api_key")
PAGE_SIZE_PARAM = "limit"
CURSOR_PARAM = "page"


def auth_headers(credential_type: str, key: str) -> dict[str, str]:
    """`environment_key` is a bearer token; `api_key` goes in X-Api-Key."""
    if credential_type == "environment_key":
        return {"Authorization": f"Bearer {key}"}
    return {"X-Api-Key": key}


def work_path(environment_id: str) -> str:
    return f"/v1/environments/{quote(environment_id, safe='')}/work"


def page_params(page_size: int, cursor: str | None) -> dict[str, str | int]:
    params: dict[str, str | int] = {PAGE_SIZE_PARAM: page_size}
    if cursor is not None:
        params[CURSOR_PARAM] = cursor
    return params


# -- responses -------------------------------------------------------------------

REQUEST_ID_HEADER = "request-id"
RETRY_AFTER_MS_HEADER = "retry-after-ms"
RETRY_AFTER_HEADER = "retry-after"
SHOULD_RETRY_HEADER = "x-should-retry"

KNOWN_STATES = ("queued", "starting", "active", "stopping", "stopped")
# States whose workers heartbeat, and the timestamp each state's age runs from.
HEARTBEAT_STATES = ("starting", "active", "stopping")
HEARTBEAT_FIELD = "latest_heartbeat_at"
STATE_SINCE_FIELD = {
    "queued": "created_at",
    "starting": "acknowledged_at",
    "active": "started_at",
    "stopping": "stop_requested_at",
}
# Opaque cursors from the API are short; anything this long is a broken or hostile server.
MAX_CURSOR_LENGTH = 4096
# State strings are short identifiers; a longer one is not a state.
MAX_STATE_LENGTH = 64


class UpstreamFormatError(ValueError):
    """A response that is not of the documented shape."""


class WorkItem(NamedTuple):
    """What the metrics need of one work item; timestamps are Unix seconds or None.

    `state_since` is when the item entered its current state (None when the
    state has no age, the field is null, or it cannot be parsed); the
    `*_unparseable` flags tell a null timestamp from a garbled one.
    """

    state: str
    state_since: float | None
    since_unparseable: bool
    latest_heartbeat: float | None
    heartbeat_unparseable: bool


class Page(NamedTuple):
    items: list[WorkItem]
    next_page: str | None


def decode_json(body: bytes) -> Any:
    """JSON from bytes; any malformed, non-UTF-8 or absurdly nested body is an UpstreamFormatError."""
    try:
        return json.loads(body)
    except RecursionError:  # nesting deeper than the interpreter's stack allows
        raise UpstreamFormatError("JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise UpstreamFormatError(f"not JSON: {type(exc).__name__}") from None


def parse_work_page(body: bytes) -> Page:
    """Turn a listing page's bytes into WorkItems and the next cursor."""
    doc = decode_json(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise UpstreamFormatError("response is not a work listing (no 'data' list)")
    cursor = doc.get("next_page")
    if cursor is not None and not isinstance(cursor, str):
        raise UpstreamFormatError("'next_page' is neither a string nor null")
    if cursor is not None and len(cursor) > MAX_CURSOR_LENGTH:
        raise UpstreamFormatError(
            f"'next_page' is {len(cursor)} characters long (at most {MAX_CURSOR_LENGTH})"
        )
    return Page([_work_item(raw) for raw in doc["data"]], cursor or None)


def _work_item(raw: Any) -> WorkItem:
    if not isinstance(raw, dict):
        raise UpstreamFormatError("a work item is not an object")
    state = raw.get("state")
    if not isinstance(state, str) or not state or len(state) > MAX_STATE_LENGTH:
        raise UpstreamFormatError("a work item has no 'state' string")
    since_field = STATE_SINCE_FIELD.get(state)
    since_raw = raw.get(since_field) if since_field else None
    since = parse_timestamp(since_raw)
    heartbeat_raw = raw.get(HEARTBEAT_FIELD)
    heartbeat = parse_timestamp(heartbeat_raw)
    return WorkItem(
        state,
        since,
        since_raw is not None and since is None,
        heartbeat,
        heartbeat_raw is not None and heartbeat is None,
    )


class ApiError(NamedTuple):
    """The parts of an error response worth logging; all upstream-controlled, so untrusted."""

    kind: str
    message: str
    request_id: str


def parse_error(body: bytes, headers: Mapping[str, str]) -> ApiError:
    """The API error body's type and message, and the request-id header; empty where absent."""
    kind = message = ""
    try:
        doc = decode_json(body)
    except UpstreamFormatError:  # an HTML error page from a proxy, or nothing at all
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        err = doc["error"]
        kind, message = str(err.get("type", "")), str(err.get("message", ""))
    return ApiError(kind, message, headers.get(REQUEST_ID_HEADER, ""))


# RFC 3339 date-time: T (or t, or space as RFC 3339 section 5.6 permits), up to 9
# fraction digits, Z/z or a numeric offset. The regex is the strictness (no dates
# alone, no missing offset, no week dates); datetime.fromisoformat, in C, does the
# calendar arithmetic and rejects month 13, hour 24, second 60, offset +25:00.
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d([Tt ])\d\d:\d\d:\d\d(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)")
# 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z: the range a work item's timestamp can hold.
_EARLIEST, _LATEST = 0.0, 253402300800.0


def parse_timestamp(value: Any) -> float | None:
    """RFC 3339 string to Unix seconds; None for null or anything unparseable.

    Fraction digits past the sixth (nanoseconds) are dropped: a float of Unix
    seconds cannot hold them anyway. Instants before 1970 or after the year
    9999 are unparseable: no work item is that old, and a year-0001 timestamp
    would otherwise become an age of 6e10 seconds.
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
        unix = datetime.fromisoformat(value).timestamp()
    except (ValueError, OverflowError):  # year 0000, month 13, or an offset past year 9999
        return None
    return unix if _EARLIEST <= unix < _LATEST else None
