"""Spot first, on-demand when spot fails: the node-type choice of the launcher's autoscaler.

Every GPU and CPU worker kind in ``aws.yaml`` / ``gcp.yaml`` comes twice, ``<kind>-spot``
and ``<kind>-ondemand``, with the same resources. Ray's default scorer
(``resource_demand_scheduler._default_utilization_scorer``, Ray 2.60) scores the two the
same and ignores which node types recently failed to launch, so a spot type whose launches
fail (no capacity) would be retried forever. This scorer:

- returns no score for a node type whose last launch failed, while Ray's availability
  tracker remembers it (``AUTOSCALER_NODE_AVAILABILITY_MAX_STALENESS_S``, 30 minutes):
  the demand goes to the next type that fits, the on-demand twin;
- otherwise scores as Ray does, and among equal scores prefers a ``-spot`` type.

The head selects it with ``RAY_AUTOSCALER_UTILIZATION_SCORER=cluster.launcher.scoring.spot_first``
in the environment of ``ray start --head`` (the autoscaler runs in that process tree;
Ray loads it with ``loader.load_function_or_class``, a dotted path).

Ray records a failed launch only where the node provider raises ``NodeLaunchException``:
AWS does (after trying every subnet / availability zone), GCP's provider does not, so on
GCP the on-demand twin takes over only once the spot type is at its ``max_workers``.
"""

from __future__ import annotations

from typing import Any

from ray.autoscaler._private.node_provider_availability_tracker import NodeAvailabilitySummary
from ray.autoscaler._private.resource_demand_scheduler import _default_utilization_scorer

SPOT_SUFFIX = "-spot"
ONDEMAND_SUFFIX = "-ondemand"


def spot_first(
    node_resources: dict[str, float],
    resources: list[dict[str, float]],
    node_type: str,
    *,
    node_availability_summary: NodeAvailabilitySummary,
) -> tuple[Any, ...] | None:
    record = node_availability_summary.node_availabilities.get(node_type)
    if record is not None and not record.is_available:
        return None
    score = _default_utilization_scorer(
        node_resources, resources, node_type, node_availability_summary=node_availability_summary
    )
    if score is None:
        return None
    return (*score, node_type.endswith(SPOT_SUFFIX))
