"""logfmt and JSON log lines, in the shape Prometheus' own programs write.

    ts=2026-11-22T10:00:00.123Z level=warn logger=exporter.scrape msg="listing work failed" \
environment_id=env_01 reason=http_401 error="HTTP 401 authentication_error: invalid key"

Fields passed with `extra=` become key=value pairs after the message.

Whatever a value holds (an environment name from discovery, an upstream message, a
traceback), a line stays one line that says only what it says: every control character
(C0, DEL, C1, U+2028 and U+2029, and the bidirectional overrides that reorder what a
terminal shows) is escaped, in logfmt as in JSON. logfmt values use JSON's string escapes
(`\\n`, `\\"`, `\\u001b`), so a quoted logfmt value reads back with any JSON parser.
"""

from __future__ import annotations

import json
import logging
import time

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "error",
}
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    fields: dict[str, object] = {
        "ts": f"{ts}.{int(record.msecs):03d}Z",
        "level": _LEVEL_NAMES.get(record.levelno, "info"),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    fields.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
    if record.exc_info:
        fields["exception"] = logging.Formatter().formatException(record.exc_info)
    return fields


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # ensure_ascii escapes C0, C1 and U+2028/2029 (all non-ASCII); DEL is ASCII, and only ever
        # inside a string here, where its escape means the same.
        return json.dumps(_fields(record), default=str).replace("\x7f", "\\u007f")


_CONTROL = [
    *range(0x20),
    0x7F,
    *range(0x80, 0xA0),
    0x2028,
    0x2029,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
]
_ESCAPES = {c: f"\\u{c:04x}" for c in _CONTROL} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    ord('"'): '\\"',
    ord("\\"): "\\\\",
}
_NEEDS_QUOTES = frozenset(" =") | {chr(c) for c in _ESCAPES}


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text and _NEEDS_QUOTES.isdisjoint(text):
        return text
    return '"' + text.translate(_ESCAPES) + '"'


def setup_logging(level: str, fmt: str, stream=None) -> None:
    """Configure the root logger: one handler, our format, the chosen level."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    # httpx logs every request at INFO, with its URL; ours are counted in metrics instead.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
