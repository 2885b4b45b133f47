"""The vision-language engine: a protocol in Ray Serve LLM's style, and transformers behind it.

:class:`VisionEngine` is ``start`` / ``check_health`` / ``generate``, like
the diffusion engine, so the Serve deployment and the caption stage
(``pipelines.stages.models.vlm``) hold an engine and never a model.
:class:`TransformersVisionEngine` runs any ``AutoModelForImageTextToText``
with its processor: jobs of one call are padded together (left) and
generated in one ``generate``, ``max_batch_size`` at a time.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from serve.vlm.protocol import VisionJob, VisionResult

if TYPE_CHECKING:
    from serve.registry import ModelSpec

ENGINE_OPTIONS = ("device", "num_threads", "allowed_media_domains")


class VisionEngine(abc.ABC):
    """Start once, answer health checks, answer batches of chats with images."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Load weights; the deployment is ready when this returns."""

    @abc.abstractmethod
    async def check_health(self) -> None:
        """Raise if the engine can no longer serve."""

    @abc.abstractmethod
    async def generate(self, jobs: Sequence[VisionJob]) -> list[VisionResult]:
        """One result per job, in order."""


class TransformersVisionEngine(VisionEngine):
    """A vision-language model through transformers' processor and ``generate``.

    ``engine_kwargs`` (from the model registry): ``device`` (default ``cuda``
    when available), ``num_threads`` (torch CPU threads) and
    ``allowed_media_domains`` (read by the deployment) configure the engine;
    anything else (``dtype``, ``revision``…) goes to ``from_pretrained``.
    """

    def __init__(self, source: str, engine_kwargs: dict[str, Any] | None = None, *, max_batch_size: int = 8) -> None:
        kwargs = dict(engine_kwargs or {})
        self.source = source
        self._options = {k: kwargs.pop(k) for k in ENGINE_OPTIONS if k in kwargs}
        self._load_kwargs = kwargs
        self.max_batch_size = max_batch_size
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlm")  # one generate at a time
        self._model: Any = None
        self._processor: Any = None
        self._failure: BaseException | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> TransformersVisionEngine:
        """The engine of a registry entry: what a Serve replica and the caption stage both hold."""
        return cls(spec.source, spec.engine_kwargs, max_batch_size=spec.max_batch_size)

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.load)

    def load(self) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if "num_threads" in self._options:
            torch.set_num_threads(int(self._options["num_threads"]))
        device = self._options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        load = dict(self._load_kwargs)
        if isinstance(load.get("dtype"), str):
            load["dtype"] = getattr(torch, load["dtype"])
        self._processor = AutoProcessor.from_pretrained(self.source)
        self._processor.tokenizer.padding_side = "left"  # generation continues every row from its end
        self._model = AutoModelForImageTextToText.from_pretrained(self.source, **load).to(device).eval()

    async def check_health(self) -> None:
        if self._failure is not None:
            raise RuntimeError(f"the engine failed: {self._failure!r}")
        if self._model is None:
            raise RuntimeError("the engine is not started")

    async def generate(self, jobs: Sequence[VisionJob]) -> list[VisionResult]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.generate_sync, list(jobs))

    def generate_sync(self, jobs: list[VisionJob]) -> list[VisionResult]:
        """Jobs of equal temperature together, ``max_batch_size`` per ``generate``; results in job order."""
        out: list[VisionResult | None] = [None] * len(jobs)
        groups: dict[float, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job.temperature, []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.max_batch_size):
                chunk = indices[start:start + self.max_batch_size]
                for i, result in zip(chunk, self._call([jobs[i] for i in chunk]), strict=True):
                    out[i] = result
        return out  # type: ignore[return-value]

    def _call(self, jobs: list[VisionJob]) -> list[VisionResult]:
        import torch

        assert self._model is not None, "start() first"
        processor, model = self._processor, self._model
        tokenizer = processor.tokenizer
        began = time.perf_counter()
        try:
            texts = [processor.apply_chat_template(job.messages, add_generation_prompt=True, tokenize=False) for job in jobs]
            images = [image for job in jobs for image in job.images]
            # The template writes BOS itself; the tokenizer must not add another.
            inputs = processor(images=images or None, text=texts, return_tensors="pt", padding=True, add_special_tokens=False)
            inputs = inputs.to(model.device)
            image_token = getattr(processor, "image_token_id", None) or tokenizer.convert_tokens_to_ids(processor.image_token)
            temperature = jobs[0].temperature
            sampling: dict[str, Any] = {"do_sample": False}
            if temperature > 0:
                sampling = {"do_sample": True, "temperature": temperature}
                if jobs[0].seed is not None:
                    torch.manual_seed(jobs[0].seed)
            with torch.inference_mode():
                generated = model.generate(**inputs, max_new_tokens=max(job.max_tokens for job in jobs),
                                           pad_token_id=tokenizer.pad_token_id, **sampling)
        except Exception as exc:
            if isinstance(exc, (ValueError, TypeError)):
                raise  # the request's fault (e.g. past the context): the engine is fine
            self._failure = exc
            raise
        share = (time.perf_counter() - began) / len(jobs)
        width = inputs["input_ids"].shape[1]
        eos = {tokenizer.eos_token_id, *([model.generation_config.eos_token_id] if isinstance(model.generation_config.eos_token_id, int)
                                         else model.generation_config.eos_token_id or [])}
        results = []
        for row, job in enumerate(jobs):
            new = generated[row, width:].tolist()[:job.max_tokens]
            stop = next((k for k, t in enumerate(new) if t in eos), None)
            kept = new if stop is None else new[:stop]
            results.append(VisionResult(
                text=tokenizer.decode(kept, skip_special_tokens=True),
                prompt_tokens=int(inputs["attention_mask"][row].sum()),
                completion_tokens=len(kept) + (0 if stop is None else 1),
                image_tokens=int((inputs["input_ids"][row] == image_token).sum()),
                finish_reason="length" if stop is None else "stop",
                batch_size=len(jobs),
                seconds=share,
            ))
        return results
