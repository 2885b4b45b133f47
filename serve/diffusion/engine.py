"""The diffusion engine: a protocol in Ray Serve LLM's style, and diffusers behind it.

``LLMEngine`` in ``ray.serve.llm`` is ``start`` / ``check_health`` / async
generation; :class:`DiffusionEngine` is the same for images, so the Serve
deployment and the batch pipelines' diffusion stage
(``pipelines.stages.models.diffusion``) hold an engine and never a diffusers
pipeline. :meth:`DiffusionEngine.generate`
takes jobs that share one batch key and renders them in one pipeline call;
:meth:`DiffusersEngine.restyle` restyles in-memory video frames (img2img),
optionally with anchor cross-frame attention against flicker.
"""

from __future__ import annotations

import abc
import asyncio
import io
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import numpy as np

from serve.diffusion.protocol import FrameBatch, FrameJob, ImageDefaults, ImageJob

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
        self._max_batch_size = max_batch_size
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
        common = _row_args(jobs, steps=first.steps, guidance_scale=first.guidance_scale, output_type="pil")
        with self._device_errors(), torch.inference_mode():
            if first.init_image is None:
                result = self._text2img(width=first.width, height=first.height, **common)
            else:
                result = self._img2img(image=[job.init_image for job in jobs], strength=first.strength, **common)
        return [_png(image) for image in result.images[:real]]

    async def restyle(self, batch: FrameBatch) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(rendered frames, rendered anchors) as HxWx3 uint8 arrays, each list in input order.

        Rows are ``anchors + frames``, one call, padded to ``max_batch_size``
        like :meth:`generate`; with ``consistency="anchor"`` each frame's
        self-attention also attends to its anchor row for this call only.
        A frame's pixels depend on its own image, prompt, seed and anchor,
        never on which other frames share the call or where it sits.
        """
        rows = len(batch.anchors) + len(batch.frames)
        if rows > self._max_batch_size:
            raise ValueError(
                f"a frame batch of {len(batch.anchors)} anchors + {len(batch.frames)} frames = {rows} rows "
                f"exceeds max_batch_size {self._max_batch_size}; split it into smaller batches"
            )
        if not rows:
            return [], []
        if self._img2img is None:
            raise RuntimeError("engine not started")
        out = await asyncio.get_running_loop().run_in_executor(self._executor, self._restyle, batch)
        return out[len(batch.anchors):], out[: len(batch.anchors)]

    def _restyle(self, batch: FrameBatch) -> list[np.ndarray]:
        import torch

        from serve.diffusion.cross_frame import anchored_attention

        rows: list[FrameJob] = batch.rows
        real = len(rows)
        n_anchors = len(batch.anchors)
        # Anchor rows and frames without an anchor point at themselves; a frame at its anchor's row.
        anchor_of = [i if i < n_anchors or job.anchor is None else job.anchor for i, job in enumerate(rows)]
        pad = max(self._pad_to - real, 0)  # one shape for every call: see the class docstring
        rows = rows + [rows[0]] * pad
        anchor_of += range(real, real + pad)  # padding anchors to itself, never to a real row
        call = _row_args(rows, steps=batch.steps, guidance_scale=batch.guidance_scale, output_type="np")
        call.update(image=np.stack([job.image for job in rows]).astype(np.float32) / 255.0, strength=batch.strength)
        anchored = anchored_attention(self._img2img.unet, anchor_of) if batch.consistency == "anchor" else nullcontext()
        with self._device_errors(), torch.inference_mode(), anchored:
            result = self._img2img(**call)
        pixels = np.clip(np.round(np.asarray(result.images[:real]) * 255.0), 0, 255).astype(np.uint8)
        return list(pixels)

    @contextmanager
    def _device_errors(self) -> Iterator[None]:
        """Device errors poison the replica: remember them so health checks fail and Serve replaces it."""
        try:
            yield
        except (RuntimeError, MemoryError) as exc:
            if "out of memory" in str(exc).lower() or "cuda" in str(exc).lower():
                self._failure = exc
            raise


def _row_args(rows: Sequence[Any], *, steps: int, guidance_scale: float, output_type: str) -> dict[str, Any]:
    """Per-row prompts and seeds of one pipeline call (image jobs and frame jobs alike).

    One CPU generator per row: its noise depends on its seed alone, whatever
    else is in the batch, and is the same on CPU and GPU.
    """
    import torch

    args: dict[str, Any] = {
        "prompt": [row.prompt for row in rows],
        "num_inference_steps": steps,
        "guidance_scale": guidance_scale,
        "generator": [torch.Generator(device="cpu").manual_seed(row.seed) for row in rows],
        "output_type": output_type,
    }
    if any(row.negative_prompt for row in rows):
        args["negative_prompt"] = [row.negative_prompt or "" for row in rows]
    return args


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
