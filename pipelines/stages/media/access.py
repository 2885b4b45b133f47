"""Where a worker reads a video from: a local file, never bytes shipped through the driver.

A `Source` names a plain file (tests, tools) or an object; objects are read
through the `ObjectHandle` the door handed the stage, which finds the local
store's own file or downloads the object once per node into a cache.
"""

from __future__ import annotations

from pathlib import Path

from farm.runner.objects import ObjectHandle
from pipelines.stages.base import MediaError
from pipelines.stages.payloads import Source


def media_path(source: Source, objects: ObjectHandle | None) -> Path:
    """A local file holding ``source``'s bytes; a missing file or object fails that input."""
    if source.path is not None:
        path = Path(source.path)
        if not path.is_file():
            raise MediaError(f"file not found: {path}")
        return path
    if source.object_key is None:
        raise ValueError(f"source {source.name} has neither a path nor an object key")
    if objects is None:
        raise RuntimeError("this stage was built without an object handle; it can only read local files")
    try:
        return objects.local_path(source.object_key)
    except FileNotFoundError:
        raise MediaError("the asset's bytes are missing from the object store") from None
