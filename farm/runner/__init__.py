"""The one door from pipelines into the farm.

A job's pipeline runs in a Ray Job started as ``python -m farm.runner <job-id>``
(`farm.runner.main`). It sees the farm only through a `JobContext`
(`farm.runner.context`): its spec, its inputs resolved for its organization,
its items, progress and events, its outputs recorded as assets, and for
batch kinds the batch's bookkeeping (`farm.runner.batch`). Workers get a
picklable `ObjectHandle` (`farm.runner.objects`) to read and write object
bytes; only the driver writes rows.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from farm.runner.connect import connect_ray
    from farm.runner.context import Cancelled, InputAsset, JobContext
    from farm.runner.objects import FolderObjects, ObjectHandle, StoredFile, StoreObjects

__all__ = [
    "Cancelled", "FolderObjects", "InputAsset", "JobContext", "ObjectHandle", "StoreObjects", "StoredFile", "connect_ray",
]
_HOMES = {
    "connect_ray": "farm.runner.connect",
    **dict.fromkeys(("Cancelled", "InputAsset", "JobContext"), "farm.runner.context"),
    **dict.fromkeys(("FolderObjects", "ObjectHandle", "StoreObjects", "StoredFile"), "farm.runner.objects"),
}


def __getattr__(name: str) -> object:
    """Names load on first use: a worker unpickling an object handle never imports the driver's side."""
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
