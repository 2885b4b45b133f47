"""A first check of a launched cluster, run on its head by ``ray submit``:

    ray submit cluster/launcher/aws.yaml cluster/launcher/smoke.py -- --accelerator L4

1. The control plane answers ``/readyz`` on the head (``farm up`` started by the head's
   start commands).
2. Ray's autoscaler adds a GPU node of that accelerator type for a resource request
   (``ray.autoscaler.sdk.request_resources``), and the time it took is printed.
3. The request is withdrawn; with ``--wait-down`` the script also waits until the node is
   gone again (``idle_timeout_minutes`` later) and prints that time.

``request_resources`` replaces the cluster's standing request, so run it on a cluster that
is not running farm jobs. It reads the token and settings the head's login shell has
(``~/farm-env/farm.env``, see docker/farm-profile.sh).
"""

from __future__ import annotations

import argparse
import sys
import time

import httpx


def bundle(accelerator: str, gpus: int = 1) -> dict[str, float]:
    """One GPU node's worth of demand for ``accelerator`` ("L4", "A10G", "H100"), as the
    launcher's node types advertise it (``accelerator_type:<X>: 1`` per node)."""
    return {"GPU": float(gpus), f"accelerator_type:{accelerator}": 1.0}


def nodes_with(resource: str) -> int:
    import ray

    return sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get(resource, 0) > 0)


def wait(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            sys.exit(f"smoke: no {what} after {timeout:.0f} s")
        time.sleep(5)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accelerator", default="L4", help="Ray accelerator type of the GPU node to ask for")
    parser.add_argument("--api", default="http://127.0.0.1:8080", help="the control plane (port 8080 on a launcher head)")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for a node (up or down)")
    parser.add_argument("--wait-down", action="store_true", help="also wait for the idle node to be removed")
    args = parser.parse_args()

    ready = httpx.get(f"{args.api}/readyz", timeout=10)
    print(f"control plane {args.api}/readyz: {ready.status_code} {ready.text}")

    import ray
    from ray.autoscaler.sdk import request_resources

    ray.init(address="auto")
    resource = f"accelerator_type:{args.accelerator}"
    before = nodes_with(resource)
    request_resources(bundles=[bundle(args.accelerator)] * (before + 1))
    up = wait(lambda: nodes_with(resource) > before, args.timeout, f"new {args.accelerator} node")
    print(f"scale up: a {args.accelerator} node joined after {up:.0f} s")
    request_resources(bundles=[])
    if args.wait_down:
        down = wait(lambda: nodes_with(resource) <= before, args.timeout, f"{args.accelerator} node removal")
        print(f"scale down: the idle {args.accelerator} node left after {down:.0f} s")


if __name__ == "__main__":
    main()
