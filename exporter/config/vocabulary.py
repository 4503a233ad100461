"""The words the config shares with the API: credential kinds, header defaults, what an environment id
may be. The config checks what enters with them; the API's wire codec sends them."""

from __future__ import annotations

import re

MANAGED_AGENTS_BETA = "managed-agents-2026-04-01"


DEFAULT_ANTHROPIC_VERSION = "2023-06-01"


# What each credential kind is sent as.
CREDENTIAL_TYPES = ("environment_key", "api_key")


# An environment id is one URL path segment: printable ASCII without these, not . or ..
MAX_ENVIRONMENT_ID_LENGTH = 256


_PRINTABLE_TOKEN = re.compile(r"[!-~]+")


_PATH_UNSAFE = re.compile(r"[/?#%]")


def environment_id_problem(value: object) -> str | None:
    """Why `value` cannot be an environment id, or None when it can (SPEC: one safe path segment)."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > MAX_ENVIRONMENT_ID_LENGTH:
        return f"is {len(value)} characters long (at most {MAX_ENVIRONMENT_ID_LENGTH})"
    if not _PRINTABLE_TOKEN.fullmatch(value):
        return "must be printable ASCII without spaces"
    if _PATH_UNSAFE.search(value):
        return "must not contain / ? # or %"
    if value in (".", ".."):
        return "must not be . or .."
    return None
