"""Reading the exporter's HTML pages in tests as a user sees them: tables as rows of cells (text and
attributes), sections by id, links by text. The standard library's parser; no browser."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Cell:
    text: str = ""
    attrs: dict[str, str] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)
    inner: list[dict[str, str]] = field(default_factory=list)  # attributes of the elements inside

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


@dataclass
class Table:
    attrs: dict[str, str]
    rows: list[list[Cell]] = field(default_factory=list)

    def records(self) -> list[dict[str, Cell]]:
        """Each row after the first as {header: cell}."""
        heads = [c.text for c in self.rows[0]]
        return [dict(zip(heads, row, strict=False)) for row in self.rows[1:]]


class Page(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.tables: list[Table] = []
        self.ids: list[str] = []
        self.links: dict[str, str] = {}  # link text -> href (the last one of that text)
        self._stack: list[Table] = []
        self._cell: Cell | None = None
        self._href: str | None = None
        self._link_text = ""
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "table":
            table = Table(a)
            self.tables.append(table)
            self._stack.append(table)
        elif tag == "tr" and self._stack:
            self._stack[-1].rows.append([])
        elif tag in ("td", "th") and self._stack:
            self._cell = Cell(attrs=a)
            self._stack[-1].rows[-1].append(self._cell)
        elif self._cell is not None:
            self._cell.inner.append({"tag": tag, **a})
        if tag == "a":
            self._href, self._link_text = a.get("href", ""), ""
            if self._cell is not None:
                self._cell.links.append(self._href)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._stack:
            self._stack.pop()
        elif tag in ("td", "th"):
            self._cell = None
        elif tag == "a" and self._href is not None:
            self.links[self._link_text.strip()] = self._href
            self._href = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.text += data
        if self._href is not None:
            self._link_text += data

    def table(self, cls: str) -> Table:
        (found,) = [t for t in self.tables if cls in t.attrs.get("class", "").split()]
        return found
