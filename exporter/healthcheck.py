"""The image's HEALTHCHECK: does the exporter in this container answer?

    python -m exporter.healthcheck

It reads the exporter's own flags from its command line (PID 1's, after an init such
as tini or catatonit if one runs first), so it follows `--web.listen-address` and
`--web.config.file`: plain HTTP or TLS, whichever the exporter serves. Over TLS the
certificate is not checked: this is the container asking its own process over
loopback, and the certificate names a host the container need not know. With basic
auth, a 401 counts as an answer: it proves the server is up, and the image holds no
password to send.

It loads only what it needs: the flags and the web config's reader (no HTTP client,
no metrics, no server), and reading the web config hashes no password.
"""

from __future__ import annotations

import http.client
import ssl
import sys
from pathlib import Path

from exporter.config.flags import parse_args, parse_listen_address
from exporter.config.yamldoc import ConfigError
from exporter.web.auth import load_web_config

TIMEOUT_SECONDS = 4.0
SCRIPT = "anthropic-work-exporter"


def exporter_arguments(cmdline: list[str]) -> list[str]:
    """The exporter's flags from a command line such as `python -m exporter ...` or `tini -- ...`."""
    for i, word in enumerate(cmdline):
        as_module = word == "exporter" and cmdline[i - 1 : i] == ["-m"]  # python -m exporter
        if as_module or Path(word).name == SCRIPT:  # the console script
            return cmdline[i + 1 :]
    return []


def probe(argv: list[str]) -> str | None:
    """None when /-/healthy answers; otherwise what went wrong, in one line."""
    args = parse_args(argv)
    host, port = parse_listen_address(args.listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host.strip("[]"))
    # The exporter's own reading of its web config: TLS exactly when the exporter serves it.
    tls = bool(args.web_config) and load_web_config(args.web_config).ssl_context is not None
    connection: http.client.HTTPConnection
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # see the module's docstring
        connection = http.client.HTTPSConnection(host, port, timeout=TIMEOUT_SECONDS, context=context)
    else:
        connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_SECONDS)
    url = f"{'https' if tls else 'http'}://{host}:{port}/-/healthy"
    try:
        connection.request("GET", "/-/healthy")
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:  # refused, timed out, not HTTP: not serving
        return f"{url}: {type(exc).__name__}: {exc}"
    finally:
        connection.close()
    return None if status in (200, 401) else f"{url}: HTTP {status}"


def main(cmdline_path: str = "/proc/1/cmdline") -> None:
    """`python -m exporter.healthcheck`: exit 0 when the container's exporter answers, else 1."""
    cmdline = Path(cmdline_path).read_bytes().decode(errors="replace").split("\0")
    try:
        problem = probe(exporter_arguments([word for word in cmdline if word]))
    except ConfigError as exc:  # the web config cannot be read or is wrong
        problem = "; ".join(exc.problems)
    except ValueError as exc:  # bad flags
        problem = str(exc)
    if problem:
        sys.exit(f"unhealthy: {problem}")


if __name__ == "__main__":
    main()
