"""What the API process holds: settings, database, object store, Ray probe."""

from __future__ import annotations

from dataclasses import dataclass

from farm.db import Database
from farm.settings import Settings
from farm.storage import ObjectStore


@dataclass
class Runtime:
    settings: Settings
    db: Database
    store: ObjectStore

    def ray_status(self) -> tuple[bool, str]:
        url = self.settings.ray.dashboard_url
        if not url:
            return False, "no Ray dashboard configured (FARM_RAY__DASHBOARD_URL)"
        from cluster.local import ray_reachable

        return (True, url) if ray_reachable(url) else (False, f"Ray at {url} is not answering")
