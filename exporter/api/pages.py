"""Cursor pagination, for every paginated endpoint: the page size, the cursor guard, the page bound.

The API pages with an opaque cursor: each page names the next (`next_page`), null or
empty at the end; a page may be empty while it names one. `Pages.pages` asks for page
after page and hands each on as it is decoded, so a caller folds it and lets it go:
memory holds one page. Two guards end a listing that would never end, as a failure:
a cursor that comes back (`repeated_cursor`, caught in constant memory by `RepeatGuard`),
and more than `max_pages` pages (`too_many_pages`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import TypeVar

from exporter.api.codec import page_params
from exporter.results import SourceFailed

P = TypeVar("P")
Params = Mapping[str, str | int]


class Pages:
    def __init__(self, page_size: int, max_pages: int, too_many: str):
        self.page_size = page_size
        self.max_pages = max_pages
        self.too_many = too_many  # what to do about too many pages, said in the failure

    async def pages(
        self,
        get: Callable[[Params], Awaitable[bytes]],
        decode: Callable[[bytes], P],
        next_cursor: Callable[[P], str | None],
        extra: Params | None = None,
    ) -> AsyncGenerator[P, None]:
        """Each page, decoded, from the first to the last; SourceFailed if the cursors never end."""
        repeats = RepeatGuard()
        cursor: str | None = None
        for _ in range(self.max_pages):
            params = page_params(self.page_size, cursor)
            page = decode(await get({**params, **extra} if extra else params))
            yield page
            cursor = next_cursor(page)
            if cursor is None:
                return
            if repeats.seen(cursor):
                raise SourceFailed(
                    "repeated_cursor",
                    "the API returned a next_page cursor it had already returned; "
                    "stopped to avoid an endless loop",
                )
        raise SourceFailed("too_many_pages", f"more than {self.max_pages} pages; {self.too_many}")


class RepeatGuard:
    """Tells a cursor that comes back, in constant memory whatever the number of pages.

    The last `window` cursors are compared exactly, so a short loop is caught at
    once; a longer one is caught by Brent's cycle detection (one saved cursor,
    replaced at every power of two steps) within a few times its length.
    """

    def __init__(self, window: int = 16):
        self.recent: deque[str] = deque(maxlen=window)
        self.saved: str | None = None
        self.power, self.steps = 1, 0

    def seen(self, cursor: str) -> bool:
        if cursor == self.saved or cursor in self.recent:
            return True
        self.recent.append(cursor)
        self.steps += 1
        if self.steps == self.power:
            self.saved, self.power, self.steps = cursor, self.power * 2, 0
        return False
