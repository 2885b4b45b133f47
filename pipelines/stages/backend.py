"""Runs a stage over items: on Ray Data (``map_batches``, one task per item) or in-process.

Both runners share the same contract: payloads travel pickled in one column,
a stage is set up once per worker process, and an exception on one item
becomes a `Failed` payload for that item's source, so the others go on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.stages.base import MediaError, Stage
from pipelines.stages.payloads import Failed, Source

if TYPE_CHECKING:
    from ray.data import Dataset

log = logging.getLogger("farm.stages")
COLUMN = "item"
_READY: dict[bytes, Stage[Any, Any]] = {}  # stages set up in this worker process
_CORES: dict[str, int | None] = {}  # `local_cores` per cluster (by GCS address), looked up once


def source_of(item: Any) -> Source:
    """The input video a payload belongs to, whatever its type."""
    if isinstance(item, Source):
        return item
    for path in ("source", "video", "chunk", "task"):
        inner = getattr(item, path, None)
        if isinstance(inner, Source):
            return inner
        if inner is not None:
            return source_of(inner)
    raise TypeError(f"{type(item).__name__} carries no Source")


def describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, MediaError) else f"{type(exc).__name__}: {exc}"


def process_one(stage: Stage[Any, Any], item: Any) -> list[Any]:
    """One item through one stage; failures become `Failed`, earlier failures pass through."""
    if isinstance(item, Failed):
        return [item]
    try:
        return list(stage.process(item))
    except Exception as exc:  # one bad input must not stop the others
        if not isinstance(exc, MediaError):
            log.exception("%s failed on %s", stage.name, source_of(item).name)
        return [Failed(source_of(item), stage.name, describe(exc))]


def run_local(stage: Stage[Any, Any], items: Iterable[Any]) -> Iterator[Any]:
    """In this process, in order: for tests, tools and one-off runs."""
    stage.setup()
    for item in items:
        yield from process_one(stage, item)


class _Apply:
    """The ``map_batches`` function: stays a plain callable so Ray runs it as tasks on warm workers."""

    def __init__(self, stage: Stage[Any, Any]) -> None:
        from ray import cloudpickle  # by value where needed: a stage defined in a script still reaches workers

        self.blob = cloudpickle.dumps(stage)
        self.key = hashlib.sha256(self.blob).digest()

    def _stage(self) -> Stage[Any, Any]:
        stage = _READY.get(self.key)
        if stage is None:
            stage = pickle.loads(self.blob)
            stage.setup()
            _READY[self.key] = stage
        return stage

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [pickle.loads(blob) for blob in batch[COLUMN]]
        try:
            stage = self._stage()
        except Exception as exc:
            out: list[Any] = [Failed(source_of(i), "setup", describe(exc)) for i in items]
        else:
            out = [o for item in items for o in process_one(stage, item)]
        column = np.empty(len(out), dtype=object)
        column[:] = [pickle.dumps(o) for o in out]
        return {COLUMN: column}


def dataset(items: Sequence[Any]) -> Dataset:
    """A Ray dataset of pickled payloads, one block per item, so every item can start on its own worker."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    # Ray Data's per-operator reservation (half the cluster by default) would only
    # leave CPUs idle here — on 2 CPUs, one task at a time.
    context.op_resource_reservation_enabled = False
    return ray.data.from_items([{COLUMN: pickle.dumps(i)} for i in items], override_num_blocks=len(items))


def local_cores() -> int | None:
    """The real cores when the cluster is this one machine and Ray was given more logical CPUs than it has; else None.

    A local head gets extra logical CPUs so Serve replicas schedule on a small
    machine (8 on 2 cores). A CPU stage would then run 8 tasks at once: 8 worker
    processes each paying Python's and the libraries' start-up, for no more
    throughput than 2. Capping a CPU stage at the cores starts only what can run.
    """
    import ray

    key = ray.get_runtime_context().gcs_address
    if key not in _CORES:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        here = ray.get_runtime_context().get_node_id()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        one_machine = len(nodes) == 1 and nodes[0]["NodeID"] == here
        _CORES[key] = cores if one_machine and cores < nodes[0]["Resources"].get("CPU", 0) else None
    return _CORES[key]


def cluster_cores() -> int:
    """CPUs a job's CPU stages can use at once: the real cores on one machine, else the cluster's logical CPUs."""
    import ray

    return local_cores() or max(1, int(ray.cluster_resources().get("CPU", 1)))


def map_stage(ds: Dataset, stage: Stage[Any, Any], *, concurrency: int | None = None) -> Dataset:
    """``stage`` over a dataset of pickled payloads, one task per payload; chains with other stages, streaming.

    A CPU stage runs at most one task per real core on a one-machine cluster (`local_cores`).
    """
    if concurrency is None and not stage.resources.gpus and (cores := local_cores()):
        concurrency = max(1, int(cores // max(stage.resources.cpus, 0.01)))
    return ds.map_batches(
        _Apply(stage), batch_size=1, batch_format="numpy", zero_copy_batch=True, concurrency=concurrency,
        num_cpus=stage.resources.cpus, num_gpus=stage.resources.gpus or None,
    )


def run_ray(stage: Stage[Any, Any], items: Sequence[Any], *, concurrency: int | None = None) -> Iterator[Any]:
    """On the Ray cluster, one task per item; yields outputs as tasks finish (unordered)."""
    if not items:
        return
    for row in map_stage(dataset(items), stage, concurrency=concurrency).iter_rows():
        yield pickle.loads(row[COLUMN])
