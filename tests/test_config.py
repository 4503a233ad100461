"""Config: strict validation, every problem at once with key path and line."""

from __future__ import annotations

import textwrap

import pytest

from exporter.config.load import parse_config
from exporter.config.yamldoc import ConfigError

KEY_ENV = {"ANTHROPIC_ENVIRONMENT_KEY": "env-key-value"}


def errors(text: str, environ: dict[str, str] | None = None, **kw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), KEY_ENV if environ is None else environ, **kw)
    return info.value.problems


def test_minimal_config_uses_defaults_and_the_environment_key():
    config = parse_config("environments:\n  - id: env_a\n", KEY_ENV)
    env = config.environments[0]
    assert (env.id, env.name) == ("env_a", "env_a")
    assert (env.credentials.type, env.credentials.value.reveal()) == ("environment_key", "env-key-value")
    assert config.api.base_url == "https://api.anthropic.com"
    assert config.api.anthropic_version == "2023-06-01"
    assert config.api.betas == ("managed-agents-2026-04-01",)


def test_without_credentials_falls_back_to_the_api_key_as_x_api_key():
    config = parse_config("environments:\n  - id: env_a\n", {"ANTHROPIC_API_KEY": "api-key-value"})
    creds = config.environments[0].credentials
    assert (creds.type, creds.value.reveal()) == ("api_key", "api-key-value")


def test_environment_key_wins_over_api_key_when_both_are_set():
    config = parse_config(
        "environments:\n  - id: env_a\n", {"ANTHROPIC_API_KEY": "a", "ANTHROPIC_ENVIRONMENT_KEY": "e"}
    )
    assert config.environments[0].credentials.type == "environment_key"


def test_global_credentials_and_per_environment_override(tmp_path):
    (tmp_path / "key").write_text("file-key-0123456789\n")
    config = parse_config(
        textwrap.dedent("""\
        api:
          credentials: {type: api_key, value_env: SHARED}
        environments:
          - id: env_a
          - id: env_b
            name: prod
            credentials: {type: environment_key, value_file: key}
        """),
        {"SHARED": "shared-key"},
        base_dir=tmp_path,
    )
    a, b = config.environments
    assert (a.credentials.type, a.credentials.value.reveal()) == ("api_key", "shared-key")
    assert (b.credentials.type, b.credentials.value.reveal()) == ("environment_key", "file-key-0123456789")
    assert b.name == "prod"


def test_every_option_parses():
    config = parse_config(
        textwrap.dedent("""\
        api:
          base_url: http://127.0.0.1:8080/
          anthropic_version: "2026-10-21"
          betas: [some-other-beta]
          workspace_id: wrkspc_1
          page_size: 500
          max_pages: 20
          request_timeout_seconds: 2.5
          max_retries: 0
        scrape: {timeout_seconds: 4, timeout_offset_seconds: 0, concurrency: 3}
        buckets: {heartbeat_age_seconds: [1, 90, 120], state_age_seconds: [10]}
        thresholds: {queue_backlog: 200, stale_heartbeat: 120}
        environments: [{id: env_a, workspace_id: wrkspc_2}]
        """),
        KEY_ENV,
    )
    api = config.api
    assert api.base_url == "http://127.0.0.1:8080"
    assert api.betas == ("managed-agents-2026-04-01", "some-other-beta")
    assert (api.page_size, api.max_pages, api.max_retries) == (500, 20, 0)
    assert api.request_timeout_seconds == 2.5
    assert (config.scrape.timeout_seconds, config.scrape.concurrency) == (4.0, 3)
    assert config.buckets.heartbeat_age_seconds == (1.0, 90.0, 120.0)
    assert (config.thresholds.queue_backlog, config.thresholds.stale_heartbeat) == (200.0, 120.0)
    assert config.thresholds.stuck_stopping == 600.0
    assert config.environments[0].workspace_id == "wrkspc_2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "environments:\n  - id: env_a\n    colour: red\n",
            "config.yaml:3: environments[0].colour: unknown key",
        ),
        (
            "environments:\n  - id: env_a\n    credentials: {type: password, value_env: X}\n",
            "config.yaml:3: environments[0].credentials.type: must be environment_key or api_key",
        ),
        (
            "environments:\n  - id: env_a\n    credentials: {type: api_key, value_env: NOPE}\n",
            "config.yaml:3: environments[0].credentials.value_env: environment variable NOPE is not set",
        ),
        (
            "environments:\n  - id: env_a\n    credentials: {type: api_key, value_file: /no/such}\n",
            "config.yaml:3: environments[0].credentials.value_file: cannot read /no/such",
        ),
        (
            "environments:\n  - id: env_a\n    credentials: {type: api_key}\n",
            "environments[0].credentials: needs exactly one of value_env or value_file",
        ),
        ("environments:\n  - name: x\n", "config.yaml:2: environments[0].id: is required"),
        ("environments:\n  - id: env_a\n  - id: env_a\n", "environments[1].id: duplicate environment id"),
        ("environments: []\n", "config.yaml:1: environments: is empty: list at least one environment id"),
        ("environments: {id: e}\n", "environments: must be a list of environments, got a mapping"),
        (
            "breakdown: {metadata_keys: team}\nenvironments: [{id: e}]\n",
            "breakdown.metadata_keys: must be a list of metadata key names",
        ),
        ("breakdown: {max_values: 0}\nenvironments: [{id: e}]\n", "breakdown.max_values: must be > 0"),
        (
            "environments:\n  - id: env_a\n    stats_credentials: {type: api_key, value_env: NOPE}\n",
            "config.yaml:3: environments[0].stats_credentials.value_env: environment variable NOPE",
        ),
        (
            "scrape: {clock_skew_seconds: -1}\nenvironments: [{id: e}]\n",
            "scrape.clock_skew_seconds: must be >= 0",
        ),
        ("api: {}\n", "environments: is required"),
        (
            "api:\n  page_size: many\nenvironments: [{id: e}]\n",
            "config.yaml:2: api.page_size: must be an integer, got a string",
        ),
        ("api:\n  page_size: 0\nenvironments: [{id: e}]\n", "api.page_size: must be > 0"),
        ("api:\n  max_retries: -1\nenvironments: [{id: e}]\n", "api.max_retries: must be >= 0"),
        (
            "api:\n  request_timeout_seconds: true\nenvironments: [{id: e}]\n",
            "api.request_timeout_seconds: must be a number, got a boolean",
        ),
        (
            "api:\n  base_url: http://api.example.com\nenvironments: [{id: e}]\n",
            "api.base_url: plain http:// is allowed for loopback hosts only",
        ),
        ("api:\n  base_url: ftp://x\nenvironments: [{id: e}]\n", "api.base_url: must be an http(s) URL"),
        ("scrape:\n  concurrency: 1.5\nenvironments: [{id: e}]\n", "scrape.concurrency: must be an integer"),
        (
            "buckets:\n  state_age_seconds: [5, 1]\nenvironments: [{id: e}]\n",
            "buckets.state_age_seconds: must be a non-empty, strictly increasing list",
        ),
        (
            "buckets:\n  queue_wait_seconds: [60, 600]\nenvironments: [{id: e}]\n",
            'config.yaml:2: buckets.queue_wait_seconds: must include 300: without its le="300.0" bucket '
            "these are empty: the recording rule "
            "environment_id:anthropic_work_queue_wait_over_300s:ratio_rate30m "
            "and the alert AnthropicWorkQueueWaitSLO",
        ),
        (
            "buckets:\n  heartbeat_age_seconds: [30, 60, 120]\nenvironments: [{id: e}]\n",
            'config.yaml:2: buckets.heartbeat_age_seconds: must include 90: without its le="90.0" bucket '
            "these are empty: the recording rule "
            "environment_id_state:anthropic_work_heartbeat_older_than_90s:count",
        ),
        (
            "thresholds:\n  queue_wait_slo: 5\nenvironments: [{id: e}]\n",
            "thresholds.queue_wait_slo: must be <= 1",
        ),
        (
            "thresholds:\n  stale_heartbeat: 100\nenvironments: [{id: e}]\n",
            "config.yaml:2: thresholds.stale_heartbeat: 100 is not a bound of buckets.heartbeat_age_seconds: "
            "the overview dashboard's Stale heartbeats panel counts items past it by that bucket",
        ),
        (
            "thresholds:\n  stale_heartbeat: 0\nenvironments: [{id: e}]\n",
            "thresholds.stale_heartbeat: must be > 0",
        ),
        (
            "thresholds:\n  stale_heartbeats: 9\nenvironments: [{id: e}]\n",
            "thresholds.stale_heartbeats: unknown key",
        ),
        (
            "metrics:\n  exclude: [anthropic_work_itemz]\nenvironments: [{id: e}]\n",
            "config.yaml:2: metrics.exclude[0]: no per-environment family is called 'anthropic_work_itemz'; "
            "did you mean anthropic_work_items?",
        ),
        (
            "metrics:\n  exclude: [anthropic_work_transitions]\nenvironments: [{id: e}]\n",
            "did you mean anthropic_work_transitions_total?",
        ),
        (
            "metrics:\n  exclude: [process_cpu_seconds_total]\nenvironments: [{id: e}]\n",
            "metrics.exclude[0]: no per-environment family is called 'process_cpu_seconds_total'",
        ),
        (
            "metrics:\n  exclude: [anthropic_work_items, anthropic_work_items]\nenvironments: [{id: e}]\n",
            "metrics.exclude[1]: anthropic_work_items is listed twice",
        ),
        (
            "metrics:\n  exclude: anthropic_work_items\nenvironments: [{id: e}]\n",
            "metrics.exclude: must be a list",
        ),
        ("environments: [{id: e}]\nenvironments: [{id: f}]\n", "config.yaml:2: environments: duplicate key"),
        ("environments: [{id: e}\n", "invalid YAML"),
        ("environments:\n  - id: .\n", "config.yaml:2: environments[0].id: not a valid environment id '.'"),
        (
            "environments:\n  - id: ..\n",
            "environments[0].id: not a valid environment id '..': it must not be",
        ),
        ("environments:\n  - id: a/b\n", "environments[0].id: not a valid environment id 'a/b'"),
        ("environments:\n  - id: a%2Fb\n", "environments[0].id: not a valid environment id 'a%2Fb'"),
        ("environments:\n  - id: 'a b'\n", "it must be printable ASCII without spaces"),
        ("environments:\n  - id: env_é\n", "it must be printable ASCII without spaces"),
        (f"environments:\n  - id: {'x' * 257}\n", "it is 257 characters long (at most 256)"),
        (
            "api:\n  base_url: 'http://[::1'\nenvironments: [{id: e}]\n",
            "config.yaml:2: api.base_url: not a URL",
        ),
        ("api:\n  base_url: 'https://host:port'\nenvironments: [{id: e}]\n", "api.base_url: not a URL"),
        ("environments: " + "[" * 3000 + "]" * 3000 + "\n", "invalid YAML"),
        ("- just\n- a list\n", "must be a mapping, got a list"),
    ],
)
def test_config_errors_name_the_key_and_line(text, expected):
    problems = errors(text)
    assert any(expected in p for p in problems), problems


def test_a_date_like_version_is_reported_as_needing_quotes():
    # YAML reads 2023-06-01 unquoted as a date; say what to do about it.
    problems = errors("api:\n  anthropic_version: 2023-06-01\nenvironments: [{id: e}]\n")
    assert problems == [
        'config.yaml:2: api.anthropic_version: must be a string such as "2023-06-01" '
        "(quote it: YAML reads an unquoted date as a date)"
    ]


def test_all_problems_are_reported_at_once():
    problems = errors(
        """\
        api:
          page_size: 0
          colour: red
        environments:
          - id: env_a
            credentials: {type: wrong, value_env: X}
        """,
        {"X": "x"},
    )
    assert len(problems) == 3, problems


def test_no_credentials_anywhere_is_an_error_naming_the_environment():
    assert errors("environments:\n  - id: env_a\n", {}) == [
        "config.yaml:2: environments[0].credentials: no credentials: set api.credentials, "
        "api.environment_keys_dir (a file named env_a there), this environment's credentials, or "
        "ANTHROPIC_ENVIRONMENT_KEY / ANTHROPIC_API_KEY in the exporter's environment"
    ]


@pytest.mark.parametrize("url", ["http://localhost:9", "http://127.0.0.5:9", "http://[::1]:9"])
def test_plain_http_is_allowed_for_loopback(url):
    config = parse_config(f"api: {{base_url: '{url}'}}\nenvironments: [{{id: e}}]\n", KEY_ENV)
    assert config.api.base_url == url


def test_plain_http_to_another_host_needs_the_explicit_switch():
    config = parse_config(
        "api: {base_url: 'http://proxy.internal', allow_insecure_http: true}\nenvironments: [{id: e}]\n",
        KEY_ENV,
    )
    assert config.api.base_url == "http://proxy.internal"


def test_keys_never_appear_in_repr_or_errors(tmp_path):
    config = parse_config("environments: [{id: e}]\n", {"ANTHROPIC_ENVIRONMENT_KEY": "sk-live-123"})
    assert "sk-live-123" not in repr(config)
    assert "sk-live-123" not in str(config.environments[0].credentials)
    problems = errors(
        "environments: [{id: e, credentials: {type: bad, value_env: K}}]\n", {"K": "sk-live-123"}
    )
    assert not any("sk-live-123" in p for p in problems)


def test_the_example_config_is_valid_and_shows_every_option():
    from pathlib import Path

    import yaml

    from exporter.config.load import load_config
    from exporter.config.schema import (
        KEYS,
        ApiConfig,
        BreakdownConfig,
        BucketConfig,
        ScrapeConfig,
        Thresholds,
    )

    path = Path(__file__).parent.parent / "config.example.yaml"
    config = load_config(path, {"ANTHROPIC_ENVIRONMENT_KEY": "e", "STAGING_API_KEY": "s"})
    assert [e.name for e in config.environments] == ["prod-sandboxes", "staging-sandboxes"]
    # The values it shows are the defaults.
    assert (config.api, config.scrape, config.buckets, config.breakdown, config.thresholds) == (
        ApiConfig(),
        ScrapeConfig(),
        BucketConfig(),
        BreakdownConfig(),
        Thresholds(),
    )
    # Every key, including the commented-out ones, appears in the example.
    text = path.read_text()
    uncommented = yaml.safe_load(
        text.replace("# value_file:", "value_file:")
        .replace("# workspace_id:", "workspace_id:")
        .replace("# environment_keys_dir:", "environment_keys_dir:")
        .replace("# stats_credentials:", "stats_credentials:")
    )
    # The discovery block is shown commented out: it needs a key and a directory to load.
    block = text.split("\n# discovery:\n", 1)[1].split("\n\n", 1)[0]
    discovery = yaml.safe_load("\n".join(line.removeprefix("#   ") for line in block.splitlines()))
    shown = {
        "": set(uncommented) | {"discovery"},
        "api": set(uncommented["api"]),
        "credentials": set(uncommented["api"]["credentials"]),
        "scrape": set(uncommented["scrape"]),
        "buckets": set(uncommented["buckets"]),
        "breakdown": set(uncommented["breakdown"]),
        "thresholds": set(uncommented["thresholds"]),
        "metrics": set(uncommented["metrics"]),
        "discovery": set(discovery),
        "environments[]": set().union(*map(set, uncommented["environments"])),
    }
    assert shown == KEYS


@pytest.mark.parametrize(
    ("key", "where"),
    [
        ("sk-ant-caf\u00e9", "environments[0].credentials.value_env: the key in env K"),
        ("sk-ant two", "environments[0].credentials.value_env: the key in env K"),
        ("sk-ant-\x00", "environments[0].credentials.value_env: the key in env K"),
    ],
    ids=["non-ascii", "space-inside", "control-character"],
)
def test_a_key_that_cannot_go_into_a_header_is_refused_at_load_without_showing_it(key, where):
    problems = errors(
        "environments:\n  - id: env_a\n    credentials: {type: api_key, value_env: K}\n", {"K": key}
    )
    assert problems == [
        f"config.yaml:3: {where} is not usable: it must be printable ASCII with no spaces inside"
    ]
    assert key not in problems[0]


def test_a_fallback_key_that_cannot_go_into_a_header_is_refused_once():
    problems = errors("environments: [{id: a}, {id: b}]\n", {"ANTHROPIC_ENVIRONMENT_KEY": "k\u00e9y"})
    assert problems == [
        "config.yaml:1: environments: the key in env ANTHROPIC_ENVIRONMENT_KEY is not usable: "
        "it must be printable ASCII with no spaces inside"
    ]


def test_the_response_size_cap_is_configurable_and_has_a_floor():
    config = parse_config("api: {max_response_bytes: 100000}\nenvironments: [{id: e}]\n", KEY_ENV)
    assert config.api.max_response_bytes == 100000
    assert parse_config("environments: [{id: e}]\n", KEY_ENV).api.max_response_bytes == 8 * 1024 * 1024
    assert errors("api: {max_response_bytes: 10}\nenvironments: [{id: e}]\n") == [
        "config.yaml:1: api.max_response_bytes: must be >= 65536, got 10"
    ]


def test_problems_are_reported_in_the_order_of_their_lines():
    problems = errors(
        """\
        scrape:
          concurrency: 0
        environments:
          - id: env_a
            credentials: {type: wrong, value_env: X}
        api:
          page_size: 0
        """,
        {"X": "x"},
    )
    assert [p.split(":")[1] for p in problems] == ["2", "5", "7"]


def test_stats_credentials_default_to_the_listings_and_can_be_set_globally_or_per_environment():
    config = parse_config(
        textwrap.dedent("""\
        api:
          stats_credentials: {type: api_key, value_env: ORG}
        environments:
          - id: env_a
          - id: env_b
            stats_credentials: {type: environment_key, value_env: B_STATS}
        """),
        {**KEY_ENV, "ORG": "org-key", "B_STATS": "b-stats"},
    )
    a, b = config.environments
    assert (a.stats_credentials.type, a.stats_credentials.value.reveal()) == ("api_key", "org-key")
    assert (b.stats_credentials.type, b.stats_credentials.value.reveal()) == ("environment_key", "b-stats")
    assert parse_config("environments: [{id: e}]\n", KEY_ENV).environments[0].stats_credentials is None
    assert set(config.secrets()) == {"env-key-value", "org-key", "b-stats"}


def test_breakdown_keys_and_cap():
    config = parse_config(
        "breakdown: {metadata_keys: [team, tier], max_values: 5}\nenvironments: [{id: e}]\n", KEY_ENV
    )
    assert (config.breakdown.metadata_keys, config.breakdown.max_values) == (("team", "tier"), 5)
    assert parse_config("environments: [{id: e}]\n", KEY_ENV).breakdown.metadata_keys == ()


def test_every_key_of_the_schema_says_what_it_is_in_one_line():
    from dataclasses import fields, is_dataclass

    from exporter.config import schema

    sections = [schema.Config, schema.Environment, schema.DiscoveryConfig]
    sections += [f.default_factory for f in fields(schema.Config) if is_dataclass(f.default_factory)]
    for section in sections:
        for f in fields(section):
            doc = f.metadata.get("doc", "")
            assert doc and "\n" not in doc and len(doc) <= 100, (section.__name__, f.name)
