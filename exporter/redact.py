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

It holds only keys in use. Each holder (a config generation, the keys directory)
says which keys it uses now (`hold`); a key no holder uses any more is retired: kept
for `RETIRED_KEY_SECONDS` (a request sent with it may still echo it back), then
forgotten. Nothing that is not a key in use ever enters: key files are checked before
their content is used (`keyfiles`), so a file caught half-written as `e` cannot make
every `e` in the log `[REDACTED]`.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Callable, Hashable, Iterable

REDACTED = "[REDACTED]"
DEFAULT_LIMIT = 300
ANCHOR = 8
RETIRED_KEY_SECONDS = 600.0  # longer than any request or listing that may have used it
_UNPRINTABLE = re.compile(r"[^ -~]")


class Redactor:
    def __init__(self, secrets: Iterable[str] = (), clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._by_ending: dict[str, list[str]] = {}  # a key's last ANCHOR characters -> keys, longest first
        self._short: set[str] = set()  # keys shorter than ANCHOR
        self._short_lengths: list[int] = []
        self._held: dict[Hashable, frozenset[str]] = {}  # holder -> the keys it uses
        self._users: dict[str, int] = {}  # key -> how many holders use it
        self._retired: list[tuple[float, str]] = []  # (forget at, key): a heap
        self._forever: set[str] = set()  # added, never let go of
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """One more key to scrub, for good (keys with no holder that could let go of them)."""
        if secret and secret not in self._forever:
            self._forever.add(secret)
            self._users[secret] = self._users.get(secret, 0) + 1
            self._index(secret)

    def hold(self, holder: Hashable, keys: Iterable[str]) -> None:
        """`holder` uses `keys` now, and no others: the keys it let go of retire unless another holds them."""
        now = self.clock()
        new = frozenset(key for key in keys if key)
        old = self._held.pop(holder, frozenset())
        if new:
            self._held[holder] = new
        for key in new - old:
            self._users[key] = self._users.get(key, 0) + 1
            self._index(key)
        for key in old - new:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                heapq.heappush(self._retired, (now + RETIRED_KEY_SECONDS, key))
        self._forget_retired(now)

    def keys(self) -> int:
        """How many keys are scrubbed now: those in use, and those retired less than a grace ago."""
        self._forget_retired(self.clock())
        return len(self._short) + sum(len(keys) for keys in self._by_ending.values())

    def _forget_retired(self, now: float) -> None:
        while self._retired and self._retired[0][0] <= now:
            _, key = heapq.heappop(self._retired)
            if key not in self._users and not any(k == key for _, k in self._retired):  # in use again
                self._unindex(key)

    def _index(self, secret: str) -> None:
        if len(secret) < ANCHOR:
            if secret not in self._short:
                self._short.add(secret)
                self._short_lengths = sorted({len(k) for k in self._short}, reverse=True)
            return
        keys = self._by_ending.setdefault(secret[-ANCHOR:], [])
        if secret not in keys:
            keys.append(secret)
            keys.sort(key=len, reverse=True)

    def _unindex(self, secret: str) -> None:
        if len(secret) < ANCHOR:
            self._short.discard(secret)
            self._short_lengths = sorted({len(k) for k in self._short}, reverse=True)
            return
        keys = self._by_ending.get(secret[-ANCHOR:], [])
        if secret in keys:
            keys.remove(secret)
            if not keys:
                del self._by_ending[secret[-ANCHOR:]]

    def redact(self, text: str) -> str:
        """Every known key replaced; nothing else changed (for multi-line tracebacks)."""
        if self._retired and self._retired[0][0] <= self.clock():
            self._forget_retired(self.clock())
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
