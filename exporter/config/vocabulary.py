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


# The per-environment metric families, by the names a scrape shows (counters end in _total):
# what `metrics.exclude` may name. tests/test_collectors.py checks it against what is exposed.
PER_ENVIRONMENT_FAMILIES = (
    "anthropic_work_items",
    "anthropic_work_heartbeat_age_seconds",
    "anthropic_work_heartbeat_age_max_seconds",
    "anthropic_work_items_without_heartbeat",
    "anthropic_work_without_heartbeat_age_max_seconds",
    "anthropic_work_state_age_seconds",
    "anthropic_work_state_age_max_seconds",
    "anthropic_work_items_by_metadata",
    "anthropic_work_unparseable_timestamps",
    "anthropic_work_implausible_timestamps",
    "anthropic_work_transitions_total",
    "anthropic_work_transitions_forgotten_total",
    "anthropic_work_queue_wait_seconds",
    "anthropic_work_start_duration_seconds",
    "anthropic_work_run_duration_seconds",
    "anthropic_work_stop_duration_seconds",
    "anthropic_work_queue_depth",
    "anthropic_work_queue_pending",
    "anthropic_work_queue_oldest_age_seconds",
    "anthropic_work_workers_polling",
    "anthropic_work_stats_success",
    "anthropic_work_scrape_success",
    "anthropic_work_scrape_duration_seconds",
    "anthropic_work_last_success_timestamp_seconds",
    "anthropic_work_environment_info",
    "anthropic_work_api_requests_total",
    "anthropic_work_listing_failures_total",
)
