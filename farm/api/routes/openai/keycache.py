"""Recently verified API keys of the generation routes, so a request does not cost a database lookup.

The generation routes are on a latency and CPU budget: looking a key up took
a thread hop, a pooled connection and an ORM query on every request, the
front door's largest cost on short completions. A verified key is trusted
for ``ttl_s`` seconds. A key revoked through this process's API is
forgotten at once; revoked elsewhere (another control-plane process, the
CLI), it stops working here within ``ttl_s``. Unknown keys are never cached.
"""

from __future__ import annotations

import hashlib
import time

from farm.accounts import Principal


class KeyCache:
    def __init__(self, ttl_s: float, max_keys: int = 10_000) -> None:
        self.ttl_s, self.max_keys = ttl_s, max_keys
        self._keys: dict[str, tuple[Principal, float]] = {}

    @staticmethod
    def _digest(presented: str) -> str:
        return hashlib.sha256(presented.encode()).hexdigest()  # no plaintext key is kept

    def get(self, presented: str) -> Principal | None:
        if self.ttl_s <= 0:
            return None
        digest = self._digest(presented)
        found = self._keys.get(digest)
        if found is None:
            return None
        principal, until = found
        if time.monotonic() >= until:
            del self._keys[digest]
            return None
        return principal

    def put(self, presented: str, principal: Principal) -> None:
        if self.ttl_s <= 0:
            return
        now = time.monotonic()
        if len(self._keys) >= self.max_keys:
            self._keys = {d: v for d, v in self._keys.items() if v[1] > now}
            while len(self._keys) >= self.max_keys:  # still full of live keys: the oldest entries go
                del self._keys[next(iter(self._keys))]
        self._keys[self._digest(presented)] = (principal, now + self.ttl_s)

    def forget(self, key_id: str) -> None:
        """Drop a revoked key at once (this process's revocations)."""
        self._keys = {d: v for d, v in self._keys.items() if v[0].key_id != key_id}
