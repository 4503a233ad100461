"""Which environments a replica watches: a stable hash of the id, shared out over the replicas.

`Shard(index, total)` owns the environments whose hash falls in its share, so M
replicas with `--shard.index 0..M-1 --shard.total M` cover every environment exactly
once, configured or discovered, and each always the same replica (transition counters
live in one replica's memory: an environment that moved to another replica would have
its counters start again there).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Shard:
    index: int = 0
    total: int = 1
    # With `--shard.index auto`, the host name without its number ("exporter-" of "exporter-2"):
    # each shard's pod is this and its index, so a message can name the pod that owns an id.
    pod_prefix: str | None = field(default=None, compare=False)

    def owner(self, environment_id: str) -> int:
        """The index of the shard that watches `environment_id`."""
        if self.total == 1:
            return 0
        digest = hashlib.sha256(b"shard/" + environment_id.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.total

    def owns(self, environment_id: str) -> bool:
        return self.owner(environment_id) == self.index

    def name(self, index: int) -> str:
        """`shard 2 of 3`, with its pod's name when the index came from the host name."""
        pod = f" (pod {self.pod_prefix}{index})" if self.pod_prefix is not None else ""
        return f"shard {index} of {self.total}{pod}"
