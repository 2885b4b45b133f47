"""The throwaway kind's pipeline: a Ray task per word writes its image; the driver records it."""

from __future__ import annotations

import io
import os

from farm.runner import JobContext, ObjectHandle, StoredFile
from tests.extra_kinds.echo_kind import EchoSpec


def card(objects: ObjectHandle, index: int, word: str) -> tuple[int, StoredFile, int]:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8 + index, 8), (index * 40 % 256, len(word) * 30 % 256, 90)).save(buf, format="PNG")
    return index, objects.put(f"{word}.png", buf.getvalue()), os.getpid()


def run(ctx: JobContext) -> None:
    import ray

    spec = ctx.spec
    assert isinstance(spec, EchoSpec)
    ctx.connect_ray()
    task = ray.remote(num_cpus=1)(card)
    rows = ["index,word,asset_id,worker_pid"]
    for index, stored, pid in ray.get([task.remote(ctx.objects, i, w) for i, w in enumerate(spec.words)]):
        asset_id = ctx.record_output(index, "card", stored)
        rows.append(f"{index},{spec.words[index]},{asset_id},{pid}")
        ctx.item(index, True)
    ctx.save_output(None, "summary", "echo.csv", ("\n".join(rows) + "\n").encode())
    ctx.flush()
