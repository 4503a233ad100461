"""The API: bytes to and from `api.anthropic.com`, and nothing about metrics.

The wire codec (`codec`: the only place that knows the API's paths, headers and JSON
field names), the transport and the bounded client, the retrying GET (`requests`), the
request budget and its pauses (`budget`), and cursor pagination (`pages`). It may import
`config` and the leaves; never prometheus_client.
"""
