"""Content negotiation: which metrics format (`Accept`), whether gzip (`Accept-Encoding`), and
whether a page goes to a browser (HTML) or to a tool (plain text).

Whatever a client sends gets a valid answer. The formats offered are the classic
text format (`text/plain; version=0.0.4`) and OpenMetrics (`application/openmetrics-text`,
versions 1.0.0 and 0.0.1, the same bytes). The best acceptable one by `q` wins, the
first listed among equals. An OpenMetrics version we do not know is not offered, so
the next choice (or the text format) is served; a header that names nothing we offer
gets the text format, as Prometheus' own exporters answer; only a client that refuses
the text format outright (`text/plain;q=0` or `*/*;q=0`) and accepts nothing else gets
`None`, a 406. `q=0` is respected for gzip too, and an explicit `gzip` wins over `*`.
"""

from __future__ import annotations

from exporter.metrics.formats import OPENMETRICS, OPENMETRICS_MEDIA, TEXT, Format


def _parts(header: str) -> list[tuple[str, dict[str, str], float]]:
    """(lower-cased value, parameters, q) of each comma-separated part; a part with a broken q is left out."""
    out = []
    for part in header.split(","):
        value, *params = part.split(";")
        parsed: dict[str, str] = {}
        for param in params:
            key, _, raw = param.partition("=")
            parsed[key.strip().lower()] = raw.strip().strip('"')
        try:
            q = float(parsed.get("q", "1"))
        except ValueError:
            continue
        if not 0 <= q <= 1:  # NaN too
            continue
        out.append((value.strip().lower(), parsed, q))
    return out


def choose_format(accept: str | None) -> Format | None:
    """The format to answer in; None when the client accepts none of them (answer 406)."""
    if not accept or not accept.strip():
        return TEXT
    best: tuple[float, int, Format] | None = None
    text_refused = False
    for order, (media, params, q) in enumerate(_parts(accept)):
        if media == OPENMETRICS_MEDIA:
            offered = OPENMETRICS.get(params.get("version", "1.0.0"))
        elif media in ("text/plain", "text/*", "*/*"):
            offered = TEXT  # any text/plain version: our names and labels are the classic ones
        else:
            continue
        if offered is None:  # an OpenMetrics version we do not know
            continue
        if q == 0:
            text_refused |= offered is TEXT
            continue
        if best is None or q > best[0]:
            best = (q, order, offered)
    if best is not None:
        return best[2]
    return None if text_refused else TEXT


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True if the client takes gzip with q > 0."""
    explicit: float | None = None
    wildcard: float | None = None
    for coding, _, q in _parts(accept_encoding or ""):
        if coding in ("gzip", "x-gzip"):
            explicit = q if explicit is None else max(explicit, q)
        elif coding == "*":
            wildcard = q
    chosen = explicit if explicit is not None else wildcard
    return chosen is not None and chosen > 0


def prefers_html(accept: str | None) -> bool:
    """True when `text/html` is asked for by name and rated at least as high as `text/plain`:
    a browser. curl (`*/*`), Prometheus and blackbox-style tooling keep plain text."""
    html_q = plain_q = 0.0
    for media, _, q in _parts(accept or ""):
        if media in ("text/html", "application/xhtml+xml"):
            html_q = max(html_q, q)
        elif media == "text/plain":
            plain_q = max(plain_q, q)
    return html_q > 0 and html_q >= plain_q
