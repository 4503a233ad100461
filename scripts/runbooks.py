"""Make the runbooks page the exporter serves at /docs/runbooks from docs/runbooks.md, or check it.

    python scripts/runbooks.py            # write exporter/web/runbooks.html
    python scripts/runbooks.py --check    # exit 1 if it is not what docs/runbooks.md makes

Each heading gets the id GitHub gives it (`## AnthropicWorkStaleHeartbeat` ->
`#anthropicworkstaleheartbeat`), so an alert's `runbook_url` has the same anchor whether it
points at the repository's copy, a published one, or the exporter's own page. A link to another
file of the repository keeps its text, unlinked: the page is served without the repository.
Made at development time (markdown-it-py is a test dependency, not a runtime one);
tests/test_web.py runs the check.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

from exporter.web import pages

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "docs" / "runbooks.md"
PAGE = ROOT / "exporter" / "web" / "runbooks.html"


def slug(text: str) -> str:
    """GitHub's heading id: lower case, punctuation but `-` and `_` dropped, spaces to `-`."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def render(markdown: str) -> str:
    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse(markdown)
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            inline = tokens[i + 1]
            token.attrSet("id", slug("".join(c.content for c in inline.children or [] if c.content)))
        if token.type == "inline" and token.children:
            token.children = _unlinked(token.children)
    body = md.renderer.render(tokens, md.options, {})
    title = markdown.splitlines()[0].lstrip("# ")
    made = "<!-- Made by scripts/runbooks.py from docs/runbooks.md: edit that, run the script. -->\n"
    # Relative links: the page is served at /docs/runbooks, whatever --web.external-url says.
    return pages.document(f"{title}: anthropic-work-exporter", made + body, pages.Links(".."))


def _unlinked(children: list[Token]) -> list[Token]:
    """Links to other files of the repository (`../rules/x.yml`) as their text alone."""
    out, dropping = [], 0
    for child in children:
        href = str(child.attrGet("href") or "") if child.type == "link_open" else ""
        if child.type == "link_open" and not href.startswith(("#", "http://", "https://")):
            dropping += 1
            continue
        if child.type == "link_close" and dropping:
            dropping -= 1
            continue
        out.append(child)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    made = render(SOURCE.read_text())
    if p.parse_args().check:
        if not PAGE.exists() or PAGE.read_text() != made:
            sys.exit(f"{PAGE.relative_to(ROOT)}: not what {SOURCE.name} makes; run scripts/runbooks.py")
        return
    PAGE.write_text(made)


if __name__ == "__main__":
    main()
