"""The diffusion stage: the Serve replica's engine, requests batched across tasks, images stored through the handle."""

from __future__ import annotations

import asyncio
import pickle
from pathlib import Path

import pytest

from farm.runner.objects import FolderObjects
from pipelines.stages.base import Resources
from pipelines.stages.models.diffusion import DiffusionStage, ImageTask
from serve.demo import demo_registry
from serve.diffusion.engine import DiffusersEngine
from serve.diffusion.protocol import ImageRequest
from serve.registry import ModelSpec

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def spec(demo_models: dict[str, Path]) -> ModelSpec:
    return demo_registry(demo_models["tiny-sd"].parent).get("tiny-sd")


@pytest.fixture
def stage(spec: ModelSpec, tmp_path: Path) -> DiffusionStage:
    stage = DiffusionStage(spec, FolderObjects(tmp_path))
    stage.setup()
    return stage


def task(item: int, **fields: object) -> ImageTask:
    return ImageTask(item, f"req-{item}", ImageRequest.model_validate({"prompt": f"frame {item}", "steps": 2, **fields}))


def test_compatible_requests_share_engine_calls_and_bad_ones_fail_alone(stage: DiffusionStage, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = stage._engine
    assert engine is not None
    calls: list[int] = []
    generate = engine.generate

    async def counted(jobs):  # type: ignore[no-untyped-def]
        calls.append(len(jobs))
        return await generate(jobs)

    monkeypatch.setattr(engine, "generate", counted)
    results = stage.process_batch([task(1, seed=1), task(2, seed=2, n=2), task(3, width=4096, height=4096), task(4, seed=9, steps=3)])
    assert calls == [3, 1]  # one call per batch key, across the requests
    one, two, bad, other = results
    assert (one.item, one.name, one.seeds, two.seeds, other.seeds) == (1, "req-1", [1], [2, 3], [9])
    assert [s.name for s in two.stored] == ["req-2-0.png", "req-2-1.png"]
    for stored in (*one.stored, *two.stored, *other.stored):
        assert stored.path and Path(stored.path).read_bytes()[:8] == PNG and stored.size == Path(stored.path).stat().st_size
    assert one.error is None and one.seconds > 0
    assert bad.stored == [] and bad.param == "size" and bad.error and bad.error.startswith("size: width 4096 is not supported")


def test_images_are_the_online_engines_images(stage: DiffusionStage, spec: ModelSpec) -> None:
    request = ImageRequest(prompt="a lighthouse", n=2, steps=2, seed=7)
    (rendered,) = stage.process_batch([ImageTask(0, "x", request)])

    async def online() -> list[bytes]:
        engine = DiffusersEngine.from_spec(spec)  # what a Serve replica holds
        await engine.start()
        return await engine.generate(request.jobs(engine.defaults))

    assert [Path(s.path or "").read_bytes() for s in rendered.stored] == asyncio.run(online())


def test_resources_come_from_the_registry(tmp_path: Path) -> None:
    spec = ModelSpec(name="sd", kind="diffusion", source="org/sd", cpus=2, gpus=1, accelerator_type="L4")
    stage = DiffusionStage(spec, FolderObjects(tmp_path))
    assert stage.resources == Resources(cpus=2, gpus=1, accelerator_type="L4")
    with pytest.raises(ValueError, match="not a diffusion model"):
        DiffusionStage(ModelSpec(name="lm", kind="llm", source="org/lm"), FolderObjects(tmp_path))


def test_a_set_up_stage_pickles_without_its_engine(stage: DiffusionStage) -> None:
    copy = pickle.loads(pickle.dumps(stage))
    assert copy._engine is None and copy.spec == stage.spec and stage._engine is not None
