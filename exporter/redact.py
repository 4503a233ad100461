"""Make upstream-controlled text safe to log: no configured key, a short line, plain characters.

An API error message, a `request-id` header or a traceback can echo what we sent,
credential included. Everything of that kind passes through `Redactor.clean`
before it reaches a log line: every known key is replaced by `[REDACTED]` first
(so cutting the text can never leave half a key behind), then anything but
printable ASCII becomes `?` and the text is cut to a length.

Redaction costs time linear in the text, however many keys there are and however
long: keys are indexed by their last `ANCHOR` characters (random in every real
key, whose beginnings are shared, `sk-ant-api03-`), so each position of the text
costs one dictionary lookup, and a comparison only for a key that ends there.
Adding a key costs the same whatever was added before (20,000 discovered
environments' keys included).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[REDACTED]"
DEFAULT_LIMIT = 300
ANCHOR = 8
_UNPRINTABLE = re.compile(r"[^ -~]")


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()):
        self._by_ending: dict[str, list[str]] = {}  # a key's last ANCHOR characters -> keys, longest first
        self._short: set[str] = set()  # keys shorter than ANCHOR
        self._short_lengths: list[int] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """One more key to scrub (a key read from a file after start)."""
        if not secret:
            return
        if len(secret) < ANCHOR:
            if secret not in self._short:
                self._short.add(secret)
                self._short_lengths = sorted({len(k) for k in self._short}, reverse=True)
            return
        keys = self._by_ending.setdefault(secret[-ANCHOR:], [])
        if secret not in keys:
            keys.append(secret)
            keys.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        """Every known key replaced; nothing else changed (for multi-line tracebacks)."""
        if not self._by_ending and not self._short:
            return text
        spans: list[tuple[int, int]] = []  # (start, end) of each key found, by end
        by_ending, short, lengths = self._by_ending, self._short, self._short_lengths
        for end in range(1, len(text) + 1):
            start = -1
            keys = by_ending.get(text[end - ANCHOR : end]) if end >= ANCHOR else None
            if keys is not None:
                for key in keys:  # longest first
                    if text.startswith(key, end - len(key)):
                        start = end - len(key)
                        break
            if start < 0:
                for length in lengths:
                    if length <= end and text[end - length : end] in short:
                        start = end - length
                        break
            if start >= 0:
                if spans and start < spans[-1][1]:  # overlaps the one before: one span
                    start = min(start, spans[-1][0])
                    spans.pop()
                spans.append((start, end))
        if not spans:
            return text
        out: list[str] = []
        at = 0
        for start, end in spans:
            out += (text[at:start], REDACTED)
            at = end
        out.append(text[at:])
        return "".join(out)

    def clean(self, text: str, limit: int = DEFAULT_LIMIT) -> str:
        """One safe line: keys replaced, then non-printable characters, then cut to `limit`."""
        text = _UNPRINTABLE.sub("?", self.redact(text))
        return text if len(text) <= limit else text[: limit - 3] + "..."
