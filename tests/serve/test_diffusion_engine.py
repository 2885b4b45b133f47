"""The diffusion engine in-process: per-image seeds, batch keys, limits (no Serve)."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from serve.diffusion.engine import DiffusersEngine
from serve.diffusion.protocol import ImageDefaults, ImageJob, ImageLimits, ImageRequest, InvalidRequest, group_compatible


@pytest.fixture(scope="module")
def engine(demo_models: dict[str, Path]) -> DiffusersEngine:
    eng = DiffusersEngine(str(demo_models["tiny-sd"]), {"num_inference_steps": 3}, max_batch_size=4)
    asyncio.run(eng.start())
    return eng


def _jobs(defaults: ImageDefaults, **fields: object) -> list[ImageJob]:
    return ImageRequest(**{"prompt": "a red boat", **fields}).jobs(defaults)  # type: ignore[arg-type]


def _b64_png(color: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_defaults_come_from_the_model_and_engine_kwargs(engine: DiffusersEngine) -> None:
    assert engine.defaults == ImageDefaults(width=64, height=64, steps=3, guidance_scale=7.5)
    asyncio.run(engine.check_health())


def test_an_image_depends_on_its_seed_not_on_its_batch(engine: DiffusersEngine) -> None:
    d = engine.defaults
    (alone,) = _jobs(d, seed=42)
    others = [*_jobs(d, prompt="a castle", seed=1), *_jobs(d, prompt="fog", negative_prompt="blurry", seed=99)]
    (solo,) = asyncio.run(engine.generate([alone]))
    batched = asyncio.run(engine.generate([others[0], alone, others[1]]))
    assert batched[1] == solo  # identical PNG bytes
    assert len({*batched}) == 3
    (again,) = asyncio.run(engine.generate(_jobs(d, seed=43)))
    assert again != solo


def test_n_images_take_consecutive_seeds(engine: DiffusersEngine) -> None:
    jobs = _jobs(engine.defaults, n=3, seed=10)
    assert [j.seed for j in jobs] == [10, 11, 12]
    pngs = asyncio.run(engine.generate(jobs))
    (eleven,) = asyncio.run(engine.generate(_jobs(engine.defaults, seed=11)))
    assert pngs[1] == eleven


def test_image_to_image_is_deterministic_per_seed(engine: DiffusersEngine) -> None:
    d = engine.defaults
    red = _jobs(d, image_b64=_b64_png((255, 0, 0), (40, 90)), strength=0.6, seed=5)
    blue = _jobs(d, image_b64=_b64_png((0, 0, 255)), strength=0.6, seed=5)
    assert red[0].init_image.size == (64, 64)  # resized to the target size
    assert red[0].batch_key == blue[0].batch_key and red[0].batch_key[0] == "img2img"
    (solo,) = asyncio.run(engine.generate(red))
    both = asyncio.run(engine.generate([blue[0], red[0]]))
    assert both[1] == solo
    assert both[0] != solo  # same seed, different input image: the input matters


def test_generate_refuses_mixed_batch_keys(engine: DiffusersEngine) -> None:
    with pytest.raises(ValueError, match="batch key"):
        asyncio.run(engine.generate([*_jobs(engine.defaults, steps=2), *_jobs(engine.defaults, steps=3)]))


def test_group_compatible_splits_by_size_steps_mode() -> None:
    d = ImageDefaults(width=64, height=64, steps=3, guidance_scale=7.5)
    jobs = [
        *_jobs(d, seed=1),
        *_jobs(d, width=128, height=128, seed=2),
        *_jobs(d, seed=3),
        *_jobs(d, steps=5, seed=4),
        *_jobs(d, image_b64=_b64_png((1, 2, 3)), seed=5),
        *_jobs(d, width=128, height=128, seed=6),
    ]
    assert group_compatible(jobs) == [[0, 2], [1, 5], [3], [4]]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 0}, "n"),
        ({"n": 11}, "n"),
        ({"width": 2048}, "size"),
        ({"height": 100}, "size"),
        ({"width": 32}, "size"),
        ({"steps": 101}, "steps"),
        ({"steps": 0}, "steps"),
        ({"prompt": "x" * 4001}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"negative_prompt": "y" * 4001}, "negative_prompt"),
        ({"image_b64": "A" * (6 << 20)}, "image"),
    ],
)
def test_limits_name_the_field(fields: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        ImageRequest(**{"prompt": "ok", **fields}).check(ImageLimits())  # type: ignore[arg-type]
    assert err.value.param == param


def test_unreadable_image_and_too_little_strength_name_the_field() -> None:
    d = ImageDefaults(width=64, height=64, steps=4, guidance_scale=7.5)
    with pytest.raises(InvalidRequest) as bad:
        _jobs(d, image_b64=base64.b64encode(b"not an image").decode())
    assert bad.value.param == "image"
    with pytest.raises(InvalidRequest) as weak:
        _jobs(d, image_b64=_b64_png((0, 0, 0)), strength=0.1)
    assert weak.value.param == "strength"
