"""The diffusion engine: a protocol in Ray Serve LLM's style, and diffusers behind it.

``LLMEngine`` in ``ray.serve.llm`` is ``start`` / ``check_health`` / async
generation; :class:`DiffusionEngine` is the same for images, so the Serve
deployment and the batch pipelines' diffusion stage
(``pipelines.stages.models.diffusion``) hold an engine and never a diffusers
pipeline. :meth:`DiffusionEngine.generate`
takes jobs that share one batch key and renders them in one pipeline call.
"""

from __future__ import annotations

import abc
import asyncio
import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from serve.diffusion.protocol import ImageDefaults, ImageJob

if TYPE_CHECKING:
    from serve.registry import ModelSpec

# engine_kwargs that set call defaults; the rest go to ``from_pretrained``.
CALL_DEFAULTS = ("width", "height", "num_inference_steps", "guidance_scale")
ENGINE_OPTIONS = ("device", "num_threads", "batch_invariant")


class DiffusionEngine(abc.ABC):
    """Start once, answer health checks, render batches of compatible jobs."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Load weights; the deployment is ready when this returns."""

    @abc.abstractmethod
    async def check_health(self) -> None:
        """Raise if the engine can no longer serve (Serve then replaces the replica)."""

    @property
    @abc.abstractmethod
    def defaults(self) -> ImageDefaults:
        """Size, steps and guidance used where a request leaves them out."""

    @abc.abstractmethod
    async def generate(self, jobs: Sequence[ImageJob]) -> list[bytes]:
        """PNG bytes for each job, in order; all jobs share one ``batch_key``."""


class DiffusersEngine(DiffusionEngine):
    """Stable Diffusion family through diffusers' auto pipelines (text-to-image and image-to-image).

    ``engine_kwargs`` (from the model registry): ``width``, ``height``,
    ``num_inference_steps`` and ``guidance_scale`` are call defaults;
    ``device`` (default: ``cuda`` when available), ``num_threads`` (torch
    CPU threads) and ``batch_invariant`` configure the engine; anything else
    (``torch_dtype``, ``variant``, ``revision``…) goes to ``from_pretrained``.

    Batch invariance (on by default): kernels pick their summation order by
    batch shape, so the same seed rendered in batches of different sizes can
    differ in the last bit, and then by one level in a few pixels. Every
    pipeline call is therefore padded to ``max_batch_size`` (the padding is
    thrown away): one shape, bit-identical images whatever the batch holds.
    The price is a full batch's work for a lone request.
    """

    def __init__(self, source: str, engine_kwargs: dict[str, Any] | None = None, *, max_batch_size: int = 1) -> None:
        kwargs = dict(engine_kwargs or {})
        self.source = source
        self._call_defaults = {k: kwargs.pop(k) for k in CALL_DEFAULTS if k in kwargs}
        self._options = {k: kwargs.pop(k) for k in ENGINE_OPTIONS if k in kwargs}
        self._load_kwargs = kwargs
        self._pad_to = max_batch_size if self._options.get("batch_invariant", True) else 1
        # One pipeline call at a time, off the replica's event loop.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffusers")
        self._text2img: Any = None
        self._img2img: Any = None
        self._defaults: ImageDefaults | None = None
        self._failure: BaseException | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> DiffusersEngine:
        """The engine of a registry entry: what a Serve replica and a batch stage both hold."""
        return cls(spec.source, spec.engine_kwargs, max_batch_size=spec.max_batch_size)

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        import torch
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

        if "num_threads" in self._options:
            torch.set_num_threads(int(self._options["num_threads"]))
        device = self._options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        load = dict(self._load_kwargs)
        if isinstance(load.get("torch_dtype"), str):
            load["torch_dtype"] = getattr(torch, load["torch_dtype"])
        if device == "cpu" and load.get("torch_dtype") == torch.float16:
            load["torch_dtype"] = torch.float32  # half precision convolutions are not implemented on CPU
        pipe = AutoPipelineForText2Image.from_pretrained(self.source, **load).to(device)
        pipe.set_progress_bar_config(disable=True)
        img2img = AutoPipelineForImage2Image.from_pipe(pipe)
        img2img.set_progress_bar_config(disable=True)
        side = pipe.unet.config.sample_size * pipe.vae_scale_factor
        self._defaults = ImageDefaults(
            width=int(self._call_defaults.get("width", side)),
            height=int(self._call_defaults.get("height", side)),
            steps=int(self._call_defaults.get("num_inference_steps", 25)),
            guidance_scale=float(self._call_defaults.get("guidance_scale", 7.5)),
        )
        self._text2img, self._img2img = pipe, img2img

    @property
    def defaults(self) -> ImageDefaults:
        if self._defaults is None:
            raise RuntimeError("engine not started")
        return self._defaults

    async def check_health(self) -> None:
        if self._text2img is None:
            raise RuntimeError("diffusion engine not started")
        if self._failure is not None:
            raise RuntimeError(f"diffusion engine failed: {self._failure!r}")

    async def generate(self, jobs: Sequence[ImageJob]) -> list[bytes]:
        if not jobs:
            return []
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._render, list(jobs))

    def _render(self, jobs: list[ImageJob]) -> list[bytes]:
        import torch

        first = jobs[0]
        if any(job.batch_key != first.batch_key for job in jobs):
            raise ValueError("generate() takes jobs that share one batch key")
        real = len(jobs)
        jobs = jobs + [first] * (self._pad_to - real)  # one shape for every call: see the class docstring
        # One CPU generator per image: its noise depends on its seed alone,
        # whatever else is in the batch, and is the same on CPU and GPU.
        generators = [torch.Generator(device="cpu").manual_seed(job.seed) for job in jobs]
        common: dict[str, Any] = {
            "prompt": [job.prompt for job in jobs],
            "num_inference_steps": first.steps,
            "guidance_scale": first.guidance_scale,
            "generator": generators,
            "output_type": "pil",
        }
        if any(job.negative_prompt for job in jobs):
            common["negative_prompt"] = [job.negative_prompt or "" for job in jobs]
        try:
            with torch.inference_mode():
                if first.init_image is None:
                    result = self._text2img(width=first.width, height=first.height, **common)
                else:
                    result = self._img2img(image=[job.init_image for job in jobs], strength=first.strength, **common)
        except (RuntimeError, MemoryError) as exc:  # device errors poison the replica: let Serve replace it
            if "out of memory" in str(exc).lower() or "cuda" in str(exc).lower():
                self._failure = exc
            raise
        return [_png(image) for image in result.images[:real]]


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
