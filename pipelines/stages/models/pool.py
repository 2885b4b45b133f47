"""A model stage on Ray Data: an actor pool whose actors set the stage up once and work batches of payloads.

A task per item (:func:`pipelines.stages.backend.run_ray`) suits stages that
start in milliseconds; a stage holding a model loads it once per actor and
then sees whole batches, so it can render compatible items in one engine
call. Payloads travel pickled in one column, as in the backend.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from pipelines.stages.backend import COLUMN
from pipelines.stages.base import Resources

if TYPE_CHECKING:
    from ray.data import Dataset


class BatchStage(Protocol):
    """What the pool needs of a stage: its resources, a setup, a batch step."""

    resources: Resources

    def setup(self) -> None: ...

    def process_batch(self, items: list[Any]) -> list[Any]: ...


class _Actor:
    """One pool actor: the stage set up once (its model loaded), then batch after batch."""

    def __init__(self, blob: bytes) -> None:
        self.stage: BatchStage = pickle.loads(blob)
        self.stage.setup()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.stage.process_batch([pickle.loads(blob) for blob in batch[COLUMN]])
        column = np.empty(len(out), dtype=object)
        column[:] = [pickle.dumps(o) for o in out]
        return {COLUMN: column}


def payloads(ds: Dataset) -> Iterator[Any]:
    """The payloads of a dataset of pickled payloads, as its blocks finish."""
    for row in ds.iter_rows():
        yield pickle.loads(row[COLUMN])


def to_payloads(ds: Dataset, fn: Callable[[dict[str, Any]], Any]) -> Dataset:
    """``fn(row)`` of every row of ``ds``, pickled in the payload column (on Ray tasks)."""
    return ds.map(lambda row: {COLUMN: pickle.dumps(fn(row))})


def run_pool(stage: BatchStage, ds: Dataset, *, batch_size: int, concurrency: int | tuple[int, int]) -> Dataset:
    """``stage`` over a dataset of pickled payloads, ``batch_size`` payloads per call, on ``concurrency`` actors."""
    from ray import cloudpickle  # by value where needed: a stage defined in a script still reaches workers

    r = stage.resources
    placement: dict[str, Any] = {"num_cpus": r.cpus}
    if r.gpus:
        placement["num_gpus"] = r.gpus
    if r.accelerator_type:
        placement["accelerator_type"] = r.accelerator_type
    # One block per call: results leave an actor as each batch is done (they stream), and
    # every actor of the pool gets work however few files the dataset was read from.
    ds = ds.repartition(target_num_rows_per_block=batch_size)
    return ds.map_batches(
        _Actor, fn_constructor_args=(cloudpickle.dumps(stage),), batch_size=batch_size, batch_format="numpy",
        zero_copy_batch=True, concurrency=concurrency, **placement,
    )
