"""Which environments a replica watches: a stable hash of the id, shared out over the replicas.

`Shard(index, total)` owns the environments whose hash falls in its share, so M
replicas with `--shard.index 0..M-1 --shard.total M` cover every environment exactly
once, configured or discovered, and each always the same replica (transition counters
live in one replica's memory: an environment that moved to another replica would have
its counters start again there).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    index: int = 0
    total: int = 1

    def owns(self, environment_id: str) -> bool:
        if self.total == 1:
            return True
        digest = hashlib.sha256(b"shard/" + environment_id.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.total == self.index
