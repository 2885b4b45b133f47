"""The farm's GPU demand handed to Ray's autoscaler: ``request_resources`` from a short Ray Job per change.

``ray.autoscaler.sdk.request_resources`` needs a connected Ray driver, and
the control plane is none: its API stays free of a driver, and the
dispatcher speaks to Ray through the Jobs API only. The request outlives the
driver that made it, though: Ray keeps it in the GCS (the autoscaler's
resource-request entry, or autoscaler v2's cluster resource constraint)
until the next request replaces it. So the dispatcher submits
``python -m farm.dispatch.autoscaler '<request>'`` as a Ray Job whenever its
plan's request changes, one at a time (a later request never lands before
an earlier one), and nothing while the queue is steady. An empty request
withdraws the demand; Ray then removes the nodes once they have been idle
for the cluster's idle timeout.

Each submission's metadata holds its request, so a restarted dispatcher
reads what stands from Ray's job list instead of guessing.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from farm.dispatch.demand import Bundle, Request

log = logging.getLogger("farm.dispatch")

#: Metadata key of the Ray Jobs that carry a request (its value: the request, encoded).
METADATA_KEY = "farm_gpu_demand"


def encode(request: Request) -> str:
    """``[[cpus, gpus, accelerator_type, count], ...]``: short, and the same text for the same request."""
    return json.dumps([[b.cpus, b.gpus, b.accelerator_type, n] for b, n in request], separators=(",", ":"))


def decode(text: str) -> Request:
    return tuple((Bundle(float(cpus), float(gpus), accelerator), int(n)) for cpus, gpus, accelerator, n in json.loads(text))


def bundles(request: Request) -> list[dict[str, float]]:
    """The request as ``request_resources(bundles=...)`` takes it: one resource dict per bundle."""
    return [b.resources() for b, n in request for _ in range(n)]


class AutoscalerRequest:
    """The dispatcher's side: what Ray holds, and the one request on its way there."""

    def __init__(self, client: Callable[[], Any], python: Callable[[], str], retry_s: float = 30) -> None:
        self._client = client
        self._python = python
        self.retry_s = retry_s
        self.applied: Request | None = None  # what Ray holds now; None until read from Ray's job list
        self.sent: list[Request] = []  # every request this dispatcher submitted, in order
        self._inflight: tuple[str, Request] | None = None
        self._retry_at = 0.0

    def update(self, request: Request) -> None:
        """Ask for ``request`` unless Ray holds it already or an earlier request is still on its way.

        Ray out of reach is logged and tried again after ``retry_s``: the demand
        must never stop the dispatcher's other work.
        """
        if time.monotonic() < self._retry_at:
            return
        try:
            self._update(request)
        except Exception as exc:
            log.warning("could not hand the GPU demand to Ray (asking again in %.0f s): %s", self.retry_s, exc)
            self._retry_at = time.monotonic() + self.retry_s

    def _update(self, request: Request) -> None:
        from ray.job_submission import JobStatus

        client = self._client()
        if self._inflight is not None:
            job_id, pending = self._inflight
            status = client.get_job_status(job_id)
            if not status.is_terminal():
                return
            self._inflight = None
            if status == JobStatus.SUCCEEDED:
                self.applied = pending
            else:
                raise RuntimeError(f"the request {job_id} ended {status.value}")
        if self.applied is None:
            self.applied = standing(client)
        if request == self.applied:
            return
        job_id = f"farm-gpu-demand-{uuid.uuid4().hex[:12]}"
        client.submit_job(
            entrypoint=f"{shlex.quote(self._python())} -m farm.dispatch.autoscaler {shlex.quote(encode(request))}",
            submission_id=job_id,
            metadata={METADATA_KEY: encode(request)},
        )
        self._inflight = (job_id, request)
        self.sent.append(request)
        log.info("asking Ray's autoscaler for %d GPU bundles (%s)", sum(n for _, n in request), job_id)


def standing(client: Any) -> Request:
    """The request of the newest finished demand job on the cluster (empty if there never was one)."""
    from ray.job_submission import JobStatus

    done = [j for j in client.list_jobs() if METADATA_KEY in (j.metadata or {}) and j.status == JobStatus.SUCCEEDED]
    if not done:
        return ()
    newest = max(done, key=lambda j: j.end_time or 0)
    return decode(newest.metadata[METADATA_KEY])


def main(argv: list[str]) -> int:
    """The Ray Job: join the cluster, replace the standing request with this one, leave."""
    from farm.runner.connect import connect_ray

    request = decode(argv[1])
    connect_ray()
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=bundles(request))
    print(f"requested {len(bundles(request))} bundles: {encode(request)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
