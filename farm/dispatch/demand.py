"""What the farm's GPU jobs need from the cluster, and how much of it the farm takes.

Ray's autoscaler adds nodes for pending Ray work only, and a job waiting in
the farm's queue is not Ray work yet: the farm has to say what it will need
(`farm.dispatch.autoscaler` says it). Each job's need comes from its kind
(`JobSpec.resources`) and from the registry entries of the models it runs
(`JobSpec.models_used`), as one resource bundle per engine.

The farm takes at most ``max_gpus`` at once. Running jobs keep what they
hold; queued jobs are admitted org by org, the org holding the fewest GPUs
first (max-min fair), each org up to ``org_share`` of the cap, so one org's
flood neither grows the cluster for itself alone nor shuts the others out.
Admitted queued jobs are what the autoscaler is asked to make room for and
the only GPU jobs the dispatcher may start; the rest wait in the queue.

The plan is a pure function of the queue, so a steady queue gives the same
request every tick, and the request is a multiset of bundles, not of jobs:
one GPU job taking another's place changes nothing to ask for.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.db.models import Job
from farm.jobs.states import ACTIVE, JobState
from kinds.base import JobResources, JobSpec, ModelUse
from kinds.registry import parse_spec

if TYPE_CHECKING:
    from serve.registry import ModelRegistry

log = logging.getLogger("farm.dispatch")

#: What a bundle asks of ``accelerator_type:<X>``: Ray's own share for tasks that name an accelerator.
ACCELERATOR_SHARE = 0.001
EPSILON = 1e-9

#: Looks up what one engine of a model holds; None for a model the registry does not have.
ModelResources = Callable[[ModelUse], JobResources | None]


@dataclass(frozen=True)
class Bundle:
    """One engine's (or one job's own) share of a node, as the autoscaler packs it onto node types."""

    cpus: float
    gpus: float
    accelerator_type: str | None = None

    def resources(self) -> dict[str, float]:
        """Ray's resource dict, as ``request_resources(bundles=...)`` and task options name them."""
        out: dict[str, float] = {}
        if self.cpus:
            out["CPU"] = self.cpus
        if self.gpus:
            out["GPU"] = self.gpus
        if self.accelerator_type:
            out[f"accelerator_type:{self.accelerator_type}"] = ACCELERATOR_SHARE
        return out

    def key(self) -> tuple[float, float, str]:
        return (self.gpus, self.cpus, self.accelerator_type or "")


@dataclass(frozen=True)
class JobDemand:
    """One active or queued job and the GPU bundles it holds or will hold."""

    job_id: str
    org_id: str
    running: bool
    bundles: tuple[Bundle, ...]
    priority: int = 50

    @property
    def gpus(self) -> float:
        return sum(b.gpus for b in self.bundles)


#: The canonical form of a request: each distinct bundle with how many of it, in a fixed order.
Request = tuple[tuple[Bundle, int], ...]


@dataclass(frozen=True)
class Plan:
    """Which GPU jobs the farm makes room for now, and what that asks of the cluster."""

    admitted: frozenset[str]  # running GPU jobs and the queued ones that fit the farm's and their org's share
    held: frozenset[str]  # queued GPU jobs that wait: the cap (or their org's share of it) is taken
    org_gpus: dict[str, float]  # GPUs each org gets under the plan
    request: Request  # what Ray's autoscaler is asked to provide (empty: nothing; nodes go when idle)

    @property
    def gpus(self) -> float:
        return sum(b.gpus * n for b, n in self.request)


def job_bundles(spec: JobSpec, models: ModelResources) -> tuple[Bundle, ...]:
    """The GPU bundles of one job: one per model engine it runs on GPUs, and its own work's, if that holds GPUs."""
    found: list[Bundle] = []
    for use in spec.models_used():
        r = models(use)
        if r is not None and r.gpus > 0:
            found.append(Bundle(r.cpus, r.gpus, r.accelerator_type))
    own = spec.resources()
    if own.gpus > 0:
        found.append(Bundle(own.cpus, own.gpus, own.accelerator_type))
    return tuple(found)


def plan(jobs: Iterable[JobDemand], max_gpus: float, org_share: float = 1.0) -> Plan:
    """Admit GPU jobs under ``max_gpus``, max-min fair between orgs, each org at most ``org_share`` of it.

    ``jobs`` come in dispatch order (priority, then age); an org's queued jobs
    are admitted in that order, never skipping one that does not fit. Running
    jobs are always admitted: they hold their GPUs already.
    """
    org_cap = max_gpus * org_share
    taken: defaultdict[str, float] = defaultdict(float)
    admitted: list[JobDemand] = []
    queues: defaultdict[str, list[JobDemand]] = defaultdict(list)
    for job in jobs:
        if job.gpus <= 0:
            continue
        if job.running:
            admitted.append(job)
            taken[job.org_id] += job.gpus
        else:
            queues[job.org_id].append(job)
    total = sum(taken.values())
    held = {job.job_id for queue in queues.values() for job in queue}
    waiting = {org: list(reversed(queue)) for org, queue in queues.items()}  # pop() takes the first
    while waiting:
        org = min(waiting, key=lambda o: (taken[o], -waiting[o][-1].priority, o))
        job = waiting[org][-1]
        if total + job.gpus > max_gpus + EPSILON or taken[org] + job.gpus > org_cap + EPSILON:
            del waiting[org]  # its next job does not fit: this org's turn is over for now
            continue
        waiting[org].pop()
        if not waiting[org]:
            del waiting[org]
        admitted.append(job)
        held.discard(job.job_id)
        taken[org] += job.gpus
        total += job.gpus
    counts = Counter(b for job in admitted for b in job.bundles)
    request = tuple(sorted(counts.items(), key=lambda item: item[0].key()))
    return Plan(frozenset(j.job_id for j in admitted), frozenset(held), dict(taken), request)


def registry_resources(load_registry: Callable[[], ModelRegistry]) -> ModelResources:
    """A lookup into the model registry (loaded on first use); an unreadable registry asks for nothing."""
    loaded: list[ModelRegistry | None] = []

    def lookup(use: ModelUse) -> JobResources | None:
        if not loaded:
            try:
                loaded.append(load_registry())
            except Exception as exc:  # the runner reports an unreadable registry; asking for nothing is safe
                log.warning("model registry unreadable, GPU demand of models unknown: %s", exc)
                loaded.append(None)
        registry = loaded[0]
        if registry is None:
            return None
        if use.name is None:
            first = registry.of_kind(use.kind)  # type: ignore[arg-type]  # kinds spell the registry's model kinds
            spec = first[0] if first else None
        else:
            spec = registry.models.get(use.name)
        if spec is None:
            return None
        return JobResources(cpus=spec.cpus, gpus=spec.gpus, accelerator_type=spec.accelerator_type)

    return lookup


class QueueDemand:
    """Reads the active and queued jobs' GPU needs from the database; each job's spec is parsed once."""

    def __init__(self, models: ModelResources) -> None:
        self.models = models
        self._bundles: dict[str, tuple[Bundle, ...]] = {}

    def jobs(self, session: Session) -> list[JobDemand]:
        states = [s.value for s in ACTIVE] + [JobState.queued.value]
        rows = session.execute(
            select(Job.id, Job.org_id, Job.state, Job.priority, Job.kind)
            .where(Job.state.in_(states)).order_by(Job.priority.desc(), Job.id)
        ).all()
        unknown = [r.id for r in rows if r.id not in self._bundles]
        if unknown:
            for job_id, kind, spec in session.execute(select(Job.id, Job.kind, Job.spec).where(Job.id.in_(unknown))):
                self.bundles(job_id, kind, spec)
        live = {r.id for r in rows}
        for gone in [j for j in self._bundles if j not in live]:
            del self._bundles[gone]
        return [JobDemand(r.id, r.org_id, r.state != JobState.queued.value, self._bundles[r.id], r.priority) for r in rows]

    def bundles(self, job_id: str, kind: str, spec: dict[str, object]) -> tuple[Bundle, ...]:
        """One job's GPU bundles (its spec never changes, so it is parsed once)."""
        if job_id not in self._bundles:
            try:
                self._bundles[job_id] = job_bundles(parse_spec(kind, spec), self.models)
            except Exception as exc:  # a kind this process does not know: the runner will fail it with a clear message
                log.warning("job %s: GPU demand unknown (%s)", job_id, exc)
                self._bundles[job_id] = ()
        return self._bundles[job_id]

    def plan(self, session: Session, max_gpus: float, org_share: float) -> Plan:
        return plan(self.jobs(session), max_gpus, org_share)
