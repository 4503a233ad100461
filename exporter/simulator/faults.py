"""What can go wrong in one simulated environment, and the hostile bodies some faults send.

Each fault is off by default and switched on per environment (`POST
/_sim/faults?environment_id=ID` with a JSON body of these fields). Besides an
unreliable API (latency, error rates, HTML error pages, truncated JSON, broken
cursors), some faults are what a hostile or broken server could send: a body
that trickles, a gzip bomb, malformed gzip, JSON nested past any parser's depth,
a cursor of megabytes, and an error that echoes the credential it was sent.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Faults:
    """What can go wrong in one environment; all off by default."""

    latency_seconds: float = 0.0  # added to every page
    error_rates: dict[str, float] = field(default_factory=dict)  # {"429": 0.5}: chance per request
    retry_after_seconds: float | None = None  # sent with 429s
    html_errors: bool = False  # error responses as an HTML page, as a proxy would send
    truncated_json: float = 0.0  # chance a 200 body is cut in half
    repeat_cursor: bool = False  # next_page never changes
    empty_pages: int = 0  # empty pages served before each page of items
    trickle_bytes_per_second: float = 0.0  # a 200 body sent this slowly (0: at once)
    gzip_bomb_bytes: int = 0  # a 200 body of this many zero bytes, gzipped
    malformed_gzip: bool = False  # a 200 body that says gzip and is not
    nesting_depth: int = 0  # a 200 body of JSON arrays nested this deep
    cursor_bytes: int = 0  # next_page this many characters long
    echo_credential: bool = False  # a 401 whose message and request-id repeat the credential sent
    leak_secrets: bool = False  # items carry their `secret`, which only the polling path should
    stats_status: int = 0  # work/stats answers this error status (0: it works)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Faults:
        names = {f.name for f in fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(sorted(unknown))}")
        return cls(**raw)


@functools.lru_cache(maxsize=4)
def gzip_bomb(size: int) -> bytes:
    """`size` zero bytes, gzipped (about 1 KiB per MiB), made without holding `size` bytes."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(min(size, 1 << 20))
    parts, left = [], size
    while left > 0:
        parts.append(compressor.compress(chunk[: min(left, len(chunk))]))
        left -= len(chunk)
    parts.append(compressor.flush())
    return b"".join(parts)


def nested_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


MALFORMED_GZIP = b"\x1f\x8b\x08\x00not really gzip at all"
