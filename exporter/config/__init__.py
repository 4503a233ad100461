"""The config: what the operator gives the exporter, checked where it enters.

The schema (`model`), the YAML reader that knows each key's line (`yamldoc`), key files
(`keys`), the words shared with the API (`vocabulary`), the command-line flags (`flags`)
and the shard a replica watches (`shard`). It may import the leaves only (`results`,
`redact`); everything else imports it.
"""
