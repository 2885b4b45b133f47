"""One way for a job's driver to join the Ray cluster it runs on.

Inside a Ray Job, Ray sets ``RAY_ADDRESS``; elsewhere the configured address
is used, else ``auto`` (a running local cluster), never a fresh head. Token
auth is turned on as the cluster expects (see `cluster.local`). Workers'
logs stay in Ray's log files instead of being copied into the job log, and
Ray Data draws no progress bars: progress is the job's own events, and both
would only cost the driver CPU the workers need.
"""

from __future__ import annotations

import logging
import os


def connect_ray(address: str | None = None) -> None:
    import ray
    import ray.data

    from cluster.local import ensure_auth_env

    if not ray.is_initialized():
        ensure_auth_env()
        ray.init(address=os.environ.get("RAY_ADDRESS") or address or "auto", logging_level=logging.WARNING,
                 log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
