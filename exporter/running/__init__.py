"""The running exporter: when to list, what to list, and what came of it.

The engine (`engine`: deadlines, shared listings, isolation), the scheduling policies
(`policies`), the result store and its one writer (`store`), the environments watched
(`targets`, `keywatch`, `discovery`), the failure log, and reloads (`reload`). It writes
results and never renders; it may import `folds`, `api`, `config` and the leaves.
"""
