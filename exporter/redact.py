"""Make upstream-controlled text safe to log: no configured key, a short line, plain characters.

An API error message, a `request-id` header or a traceback can echo what we sent,
credential included. Everything of that kind passes through `Redactor.clean`
before it reaches a log line: every configured key is replaced by
`[REDACTED]` first (so cutting the text can never leave half a key behind),
then anything but printable ASCII becomes `?` and the text is cut to a length.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[REDACTED]"
DEFAULT_LIMIT = 300
_UNPRINTABLE = re.compile(r"[^ -~]")


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()):
        self._keys: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """One more key to scrub (a key read from a directory after start)."""
        if secret and secret not in self._keys:
            self._keys.add(secret)
            # Longest first, so a key that contains another is replaced whole.
            keys = sorted(self._keys, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, keys)))

    def redact(self, text: str) -> str:
        """Every configured key replaced; nothing else changed (for multi-line tracebacks)."""
        return self._pattern.sub(REDACTED, text) if self._pattern is not None else text

    def clean(self, text: str, limit: int = DEFAULT_LIMIT) -> str:
        """One safe line: keys replaced, then non-printable characters, then cut to `limit`."""
        text = _UNPRINTABLE.sub("?", self.redact(text))
        return text if len(text) <= limit else text[: limit - 3] + "..."
