"""How the farm runs Ray: the local head behind `farm up`, auth, cluster manifests."""

from cluster.local import (
    LocalRayHead,
    RayHeadError,
    auth_headers,
    auth_token,
    ensure_auth_env,
    job_client,
    ray_reachable,
)

__all__ = [
    "LocalRayHead",
    "RayHeadError",
    "auth_headers",
    "auth_token",
    "ensure_auth_env",
    "job_client",
    "ray_reachable",
]
