"""The upstream API's shapes: the only module that knows its paths, headers and JSON field names.

A listing page is `{"data": [work, ...], "next_page": cursor | null}`. Of each
work item only the state and the timestamps the metrics need are kept; the
`secret` field (a credential payload) and everything else are never read.

Decoding is where upstream values enter, so it checks them: whatever bytes
arrive, each decoder returns its value or raises `UpstreamFormatError` (never a
RecursionError, a KeyError or an OverflowError). Strings the metrics keep must be
valid text (a JSON `\\ud800` escape is legal JSON and no text at all), counts must
be integers a float holds exactly, nesting is bounded by the parsers' own limits
anywhere in a body, and a cursor longer than `MAX_CURSOR_LENGTH` is refused before
it can reach a URL. Timestamps have one grammar on every path (`parse_timestamp`).

Environment ids enter from the config and from discovery; both ask
`environment_id_problem`, so only ids that are safe as one URL path segment are
ever used.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NamedTuple
from urllib.parse import quote

import msgspec

from exporter.config.vocabulary import (
    environment_id_problem,
)

# -- requests --------------------------------------------------------------------

VERSION_HEADER = "anthropic-version"
BETA_HEADER = "anthropic-beta"
WORKSPACE_HEADER = "anthropic-workspace-id"
PAGE_SIZE_PARAM = "limit"
CURSOR_PARAM = "page"


def auth_headers(credential_type: str, key: str) -> dict[str, str]:
    """`environment_key` is a bearer token; `api_key` goes in X-Api-Key."""
    if credential_type == "environment_key":
        return {"Authorization": f"Bearer {key}"}
    return {"X-Api-Key": key}


WORK_PATH = "/v1/environments/{environment_id}/work"
STATS_PATH = "/v1/environments/{environment_id}/work/stats"


def environment_path(pattern: str, environment_id: str) -> str:
    """An endpoint's path (`WORK_PATH`, ...) for one environment: the id as one escaped segment."""
    return pattern.format(environment_id=quote(environment_id, safe=""))


ENVIRONMENTS_PATH = "/v1/environments"


INCLUDE_ARCHIVED_PARAM = "include_archived"


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
# What happens to a work item, in order, each stamped by the API as `<event>_at`.
EVENTS = ("created", "acknowledged", "started", "stop_requested", "stopped")
EVENT_FIELDS = tuple(f"{event}_at" for event in EVENTS)
# States whose workers heartbeat, and the event each state's age runs from.
HEARTBEAT_STATES = ("starting", "active", "stopping")
HEARTBEAT_FIELD = "latest_heartbeat_at"
STATE_SINCE_EVENT = {"queued": 0, "starting": 1, "active": 2, "stopping": 3}  # index into EVENTS
STATE_SINCE_FIELD = {state: EVENT_FIELDS[i] for state, i in STATE_SINCE_EVENT.items()}
# Opaque cursors from the API are short; anything this long is a broken or hostile server.
MAX_CURSOR_LENGTH = 4096
# State strings are short identifiers; a longer one is not a state.
MAX_STATE_LENGTH = 64
MAX_ID_LENGTH = 256
# Metadata values become label values: cut to this many characters.
MAX_LABEL_LENGTH = 128


# Counts must be exactly representable as the float a sample is: 2**53.
MAX_COUNT = 2**53


class UpstreamFormatError(ValueError):
    """A response that is not of the documented shape."""


def is_text(value: str) -> bool:
    """True unless `value` holds a lone surrogate (from a `\\ud800` escape): it could never be encoded."""
    if value.isascii():  # the common case, in C
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


class WorkItem(NamedTuple):
    """What the metrics need of one work item; timestamps are Unix seconds or None.

    `events` holds the item's timestamp for each of EVENTS (None when null or
    unparseable); `unparseable` names the timestamp fields that were present but
    garbled, so a null timestamp can be told from a broken one. `labels` are the
    item's values for the configured metadata keys (None where it has no such key).
    `session` is `data.id`, the session the work runs (for exemplars and the debug
    page); None when it has none, or none that is valid text.
    """

    id: str
    state: str
    events: tuple[float | None, ...]
    latest_heartbeat: float | None
    unparseable: tuple[str, ...] = ()
    labels: tuple[str | None, ...] = ()
    session: str | None = None

    @property
    def state_since(self) -> float | None:
        """When the item entered its current state, for the states that have an age."""
        index = STATE_SINCE_EVENT.get(self.state)
        return None if index is None else self.events[index]


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


# RFC 3339 wants an offset: msgspec refuses a naive timestamp (and the page goes the tolerant way).
_Stamp = Annotated[datetime, msgspec.Meta(tz=True)]


class _WireData(msgspec.Struct):
    """Of the item's `data` (the session, or a health check), only its id."""

    id: str | None = None


_STAMPS = (*EVENT_FIELDS, HEARTBEAT_FIELD)  # in the order _typed_items reads them


@functools.lru_cache(maxsize=8)
def _page_decoder(metadata_keys: tuple[str, ...]) -> msgspec.json.Decoder[Any]:
    """A decoder of a page into structs of only the fields the metrics use, `metadata_keys` included:
    msgspec skips everything else (`secret`, other metadata) without building it."""
    fields: list[Any] = [("id", str), ("state", str), *((name, _Stamp | None, None) for name in _STAMPS)]
    fields.append(("data", _WireData | None, None))
    if metadata_keys:  # the configured keys' values, whatever their type (a non-string counts as missing)
        keys = [(f"key{n}", Any, None) for n in range(len(metadata_keys))]
        rename = {f"key{n}": key for n, key in enumerate(metadata_keys)}
        metadata = msgspec.defstruct("_WireMetadata", keys, rename=rename)
        fields.append(("metadata", metadata | None, None))
    item = msgspec.defstruct("_WireItem", fields)
    page = msgspec.defstruct("_WirePage", [("data", list[item]), ("next_page", str | None, None)])  # type: ignore[valid-type]
    return msgspec.json.Decoder(page)


class _Tolerate(Exception):
    """This page needs the tolerant path: a timestamp or field msgspec's typed decoding won't take."""


def parse_work_page(body: bytes, metadata_keys: tuple[str, ...] = ()) -> Page:
    """Turn a listing page's bytes into WorkItems and the next cursor.

    The common page is decoded by msgspec into typed structs (only the fields used,
    RFC 3339 parsed in C, only the configured metadata keys), about twice as fast as
    the json module plus Python parsing. A page it will not take (a garbled timestamp,
    a missing offset, a year outside 1970-9999, an odd field) is decoded again by the
    tolerant path, for that page only, so one bad item costs its own timestamps and
    never the page.

    Nothing in `data` is read but the session id: a health-check item (`data.type`
    "healthcheck", which the queue sends too) is work like any other.
    """
    try:
        wire = _page_decoder(metadata_keys).decode(body)
        cursor = wire.next_page
        if cursor is not None and (len(cursor) > MAX_CURSOR_LENGTH or not is_text(cursor)):
            raise _Tolerate
        return Page(_typed_items(wire.data, len(metadata_keys)), cursor or None)
    except (msgspec.DecodeError, _Tolerate, RecursionError):  # RecursionError: nested past msgspec's limit
        return _parse_tolerantly(body, metadata_keys)


def _typed_items(items: list[Any], keys: int) -> list[WorkItem]:
    """The hot path, once per item: one loop, no helper calls, each timestamp converted and
    checked where it is read, one tuple built per item. Anything odd: `_Tolerate`."""
    out: list[WorkItem] = []
    append, new = out.append, tuple.__new__
    latest, earliest = _LATEST, _EARLIEST
    for item in items:
        state, item_id = item.state, item.id
        if not (0 < len(state) <= MAX_STATE_LENGTH and 0 < len(item_id) <= MAX_ID_LENGTH):
            raise _Tolerate
        if not (state.isascii() and item_id.isascii()) and not (is_text(state) and is_text(item_id)):
            raise _Tolerate
        c = item.created_at
        if c is not None and not earliest <= (c := c.timestamp()) < latest:
            raise _Tolerate
        a = item.acknowledged_at
        if a is not None and not earliest <= (a := a.timestamp()) < latest:
            raise _Tolerate
        s = item.started_at
        if s is not None and not earliest <= (s := s.timestamp()) < latest:
            raise _Tolerate
        r = item.stop_requested_at
        if r is not None and not earliest <= (r := r.timestamp()) < latest:
            raise _Tolerate
        p = item.stopped_at
        if p is not None and not earliest <= (p := p.timestamp()) < latest:
            raise _Tolerate
        h = item.latest_heartbeat_at
        if h is not None and not earliest <= (h := h.timestamp()) < latest:
            raise _Tolerate
        labels: tuple[str | None, ...] = ()
        if keys:
            metadata = item.metadata
            if metadata is None:
                labels = (None,) * keys
            else:
                labels = tuple(_label(value) for value in msgspec.structs.astuple(metadata))
        data = item.data
        session = None if data is None else data.id
        if session is not None and not (session.isascii() and 0 < len(session) <= MAX_ID_LENGTH):
            raise _Tolerate  # the tolerant path decides whether it is usable
        append(new(WorkItem, (item_id, state, (c, a, s, r, p), h, (), labels, session)))
    return out


def _parse_tolerantly(body: bytes, metadata_keys: tuple[str, ...]) -> Page:
    """The json module and Python parsing: every field checked, a garbled timestamp just unparseable."""
    doc = decode_json(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise UpstreamFormatError("response is not a work listing (no 'data' list)")
    return Page([_work_item(raw, metadata_keys) for raw in doc["data"]], _cursor(doc.get("next_page")))


def _cursor(cursor: Any) -> str | None:
    """`next_page` as a cursor to send back, or None at the end; refused when it could not be sent."""
    if cursor is not None and not isinstance(cursor, str):
        raise UpstreamFormatError("'next_page' is neither a string nor null")
    if cursor is not None and len(cursor) > MAX_CURSOR_LENGTH:
        raise UpstreamFormatError(
            f"'next_page' is {len(cursor)} characters long (at most {MAX_CURSOR_LENGTH})"
        )
    if cursor is not None and not is_text(cursor):
        raise UpstreamFormatError("'next_page' is not valid text")
    return cursor or None


def _work_item(raw: Any, metadata_keys: tuple[str, ...]) -> WorkItem:
    if not isinstance(raw, dict):
        raise UpstreamFormatError("a work item is not an object")
    state = raw.get("state")
    if not isinstance(state, str) or not state or len(state) > MAX_STATE_LENGTH or not is_text(state):
        raise UpstreamFormatError("a work item has no 'state' string")
    item_id = raw.get("id")
    if not isinstance(item_id, str) or not item_id or len(item_id) > MAX_ID_LENGTH or not is_text(item_id):
        raise UpstreamFormatError("a work item has no 'id' string")
    unparseable: list[str] = []
    events = []
    for field in EVENT_FIELDS:
        value = raw.get(field)
        parsed = parse_timestamp(value)
        if value is not None and parsed is None:
            unparseable.append(field)
        events.append(parsed)
    heartbeat_raw = raw.get(HEARTBEAT_FIELD)
    heartbeat = parse_timestamp(heartbeat_raw)
    if heartbeat_raw is not None and heartbeat is None:
        unparseable.append(HEARTBEAT_FIELD)
    labels: tuple[str | None, ...] = ()
    if metadata_keys:
        metadata = raw.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        labels = tuple(_label(metadata.get(key)) for key in metadata_keys)
    data = raw.get("data")
    session = data.get("id") if isinstance(data, dict) else None
    if not (isinstance(session, str) and 0 < len(session) <= MAX_ID_LENGTH and is_text(session)):
        session = None  # optional: an odd one costs the item nothing but its session
    return WorkItem(item_id, state, tuple(events), heartbeat, tuple(unparseable), labels, session)


def _label(value: Any) -> str | None:
    """A metadata value as a label value: strings as they are (cut to a sane length), else missing.

    A string that is not valid text fails the page: it could not be written as a label.
    """
    if isinstance(value, str):
        if not is_text(value):
            raise UpstreamFormatError("a metadata value is not valid text")
        return value[:MAX_LABEL_LENGTH]
    return None


class QueueStats(NamedTuple):
    """`GET .../work/stats`: the queue as the API counts it."""

    depth: int  # waiting to be picked up
    pending: int  # polled, not acknowledged
    oldest_queued_at: float | None  # Unix seconds; None when the queue is empty (or unparseable)
    oldest_unparseable: bool
    workers_polling: int | None  # None when the API does not know (workers send no id)


def parse_stats(body: bytes) -> QueueStats:
    doc = decode_json(body)
    if not isinstance(doc, dict):
        raise UpstreamFormatError("response is not work queue statistics")
    depth, pending, workers = doc.get("depth"), doc.get("pending"), doc.get("workers_polling")
    if not (_count(depth) and _count(pending)):
        raise UpstreamFormatError(f"'depth' and 'pending' must be integers from 0 to {MAX_COUNT}")
    if workers is not None and not _count(workers):
        raise UpstreamFormatError(f"'workers_polling' must be an integer from 0 to {MAX_COUNT}, or null")
    oldest_raw = doc.get("oldest_queued_at")
    oldest = parse_timestamp(oldest_raw)
    assert isinstance(depth, int) and isinstance(pending, int)  # _count said so
    return QueueStats(depth, pending, oldest, oldest_raw is not None and oldest is None, workers)


def _count(value: Any) -> bool:
    """A count a sample can show exactly: `10**400` is valid JSON, and no float."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT


def _loggable(value: Any) -> str:
    """An error body's string for the log (cleaned there); anything else, or broken text, is left out."""
    return value if isinstance(value, str) and is_text(value) else ""


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
        kind, message = _loggable(err.get("type")), _loggable(err.get("message"))
    return ApiError(kind, message, headers.get(REQUEST_ID_HEADER, ""))


# 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z: the range a work item's timestamp can hold.
# As floats: the typed path takes [_EARLIEST, _LATEST) at once; the last microseconds before _LATEST
# round to it as a float, so an instant that lands on it goes the tolerant way, which checks it exactly.
_EARLIEST, _LATEST = 0.0, 253402300800.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LAST_MICROSECOND = 253402300800 * 1_000_000 - 1  # 9999-12-31T23:59:59.999999Z, in µs since 1970
_MICROSECOND = timedelta(microseconds=1)
# RFC 3339 allows second 60 (a leap second); msgspec and datetime do not. `hh:mm:60` is read as
# `hh:mm:59` plus one second: the instant POSIX time gives it (the first of the next minute).
_LEAP_SECOND = re.compile(r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:)60(?=[.Zz+-])")


def parse_timestamp(value: Any) -> float | None:
    """RFC 3339 string to Unix seconds; None for null or anything unparseable.

    The grammar is msgspec's RFC 3339 parser, the one the typed path decodes pages
    with, so both paths read every string the same way: `T`, `t` or a space between
    date and time; `Z`, `z` or a numeric offset (required); fraction digits rounded
    half up to the microsecond. Second 60 (a leap second) is the first instant of the
    next minute. Instants before 1970-01-01T00:00:00Z or after
    9999-12-31T23:59:59.999999Z are unparseable on both paths: no work item is that
    old, and a year-0001 timestamp would otherwise become an age of 6e10 seconds.
    """
    if not isinstance(value, str):
        return None
    leap = 0
    try:
        stamp = msgspec.convert(value, _Stamp)
    except (msgspec.ValidationError, OverflowError, ValueError):  # not RFC 3339, no offset, or second 60
        fixed, leap = _LEAP_SECOND.subn(r"\g<1>59", value, count=1)
        if not leap:
            return None
        try:
            stamp = msgspec.convert(fixed, _Stamp)
        except (msgspec.ValidationError, OverflowError, ValueError):
            return None
    # Exact, in whole microseconds: a float cannot tell the range's last microsecond from the next.
    micros = (stamp - _EPOCH) // _MICROSECOND + leap * 1_000_000
    if not 0 <= micros <= _LAST_MICROSECOND:
        return None
    return micros / 1_000_000


class ListedEnvironment(NamedTuple):
    """An environment as `GET /v1/environments` lists it: what discovery needs of it."""

    id: str  # safe as a path segment: environment_id_problem said so
    name: str
    self_hosted: bool  # config.type "self_hosted"; cloud environments have no work queue to watch
    archived: bool


class EnvironmentsPage(NamedTuple):
    environments: list[ListedEnvironment]
    invalid: list[str]  # why each id that cannot be used safely was skipped, one line each
    next_page: str | None


def parse_environments_page(body: bytes) -> EnvironmentsPage:
    """A discovery page. An entry whose id cannot be used is skipped and said why, not fatal."""
    doc = decode_json(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise UpstreamFormatError("response is not an environment listing (no 'data' list)")
    cursor = _cursor(doc.get("next_page"))
    out, invalid = [], []
    for raw in doc["data"]:
        if not isinstance(raw, dict):
            raise UpstreamFormatError("an environment is not an object")
        env_id = raw.get("id")
        problem = environment_id_problem(env_id)
        if problem is not None:
            shown = repr(env_id[:40]) if isinstance(env_id, str) else type(env_id).__name__
            invalid.append(f"id {shown} {problem}")
            continue
        assert isinstance(env_id, str)
        config = raw.get("config")
        name = raw.get("name")
        # A display name goes into logs and labels: printable text only (no control, format or
        # separator characters, which could forge a log line or a terminal's view), else the id.
        usable_name = (
            name[:MAX_LABEL_LENGTH]
            if isinstance(name, str) and name.isprintable() and is_text(name)
            else None
        )
        out.append(
            ListedEnvironment(
                env_id,
                usable_name or env_id,
                isinstance(config, dict) and config.get("type") == "self_hosted",
                raw.get("archived_at") is not None,
            )
        )
    return EnvironmentsPage(out, invalid, cursor)
