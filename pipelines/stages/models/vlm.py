"""Stages that hold a vision-language model: shots with sampled frames in, captions out.

The registry entry's ``runtime`` picks the engine. ``transformers`` (CPUs):
:class:`VisionStage` holds the engine a Serve replica holds
(``TransformersVisionEngine.from_spec``) in a Ray Data actor pool and
answers a whole batch of shots, from any videos, in one ``generate``.
``vllm`` (GPU clusters): :class:`VisionLLMStage` is ``ray.data.llm``'s vLLM
processor with its multimodal stage, configured from the same entry as the
Serve config (:func:`serve.llm.batch_engine_config`); each row carries its
frames as JPEG data URLs in OpenAI ``image_url`` parts.
"""

from __future__ import annotations

import base64
import io
import pickle
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.stages.backend import COLUMN, describe, source_of
from pipelines.stages.base import Resources
from pipelines.stages.caption.files import ShotCaption
from pipelines.stages.caption.sample import CaptionTask
from pipelines.stages.models import model_resources
from pipelines.stages.payloads import Failed, Video
from serve.registry import ModelSpec

if TYPE_CHECKING:
    from ray.data import Dataset
    from ray.data.llm import vLLMEngineProcessorConfig

    from serve.vlm.engine import TransformersVisionEngine


@dataclass(frozen=True)
class Captioned:
    """One shot's caption, with the video it belongs to and how many shots that video has."""

    video: Video
    caption: ShotCaption
    shots: int


def _check(spec: ModelSpec, runtime: str) -> None:
    if spec.kind != "vlm":
        raise ValueError(f"{spec.name} is a {spec.kind} model, not a vision-language model")
    if spec.runtime != runtime:
        raise ValueError(f"{spec.name} runs on {spec.runtime}, not {runtime}")


class VisionStage:
    """One transformers engine per actor; a batch of `CaptionTask`s (and passing `Failed`s) into `Captioned`s."""

    def __init__(self, spec: ModelSpec) -> None:
        _check(spec, "transformers")
        self.spec = spec
        self.resources: Resources = model_resources(spec)
        self._engine: TransformersVisionEngine | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_engine": None}  # each actor loads its own

    def setup(self) -> None:
        from serve.vlm.engine import TransformersVisionEngine

        self._engine = TransformersVisionEngine.from_spec(self.spec)
        self._engine.load()

    def process_batch(self, items: list[Any]) -> list[Any]:
        """Every task of the batch in as few engine calls as the model allows; a task that fails alone fails its video."""
        from serve.vlm.protocol import VisionJob

        assert self._engine is not None, "setup() first"
        tasks = [i for i in items if isinstance(i, CaptionTask)]
        out: list[Any] = [i for i in items if not isinstance(i, CaptionTask)]
        jobs = [VisionJob(t.messages(), tuple(t.images), max_tokens=t.max_tokens) for t in tasks]
        try:
            results = self._engine.generate_sync(jobs)
        except Exception:  # find the culprit: one at a time, so the others still get their captions
            results = []
            for task, job in zip(tasks, jobs, strict=True):
                try:
                    results += self._engine.generate_sync([job])
                except Exception as exc:
                    results.append(Failed(source_of(task), "caption", f"shot {task.shot.index}: the model failed ({describe(exc)})"))
        for task, r in zip(tasks, results, strict=True):
            out.append(r if isinstance(r, Failed) else Captioned(task.video, ShotCaption(
                task.shot, task.frames, r.text, r.prompt_tokens, r.image_tokens, r.completion_tokens, r.finish_reason, r.batch_size),
                task.shots))
        return out


def data_url(image: np.ndarray, quality: int = 90) -> str:
    """An RGB frame as a JPEG data URL, the form vLLM's multimodal parser loads."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def vllm_request(task: CaptionTask) -> dict[str, Any]:
    """A caption task as a ``ray.data.llm`` row: OpenAI chat messages with ``image_url`` parts, greedy sampling."""
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": data_url(image)}} for image in task.images]
    parts.append({"type": "text", "text": task.prompt})
    return {"messages": [{"role": "user", "content": parts}],
            "sampling_params": {"max_tokens": task.max_tokens, "temperature": 0.0}}


@dataclass(frozen=True)
class VisionLLMStage:
    """``ray.data.llm``'s vLLM processor for a vision-language model (GPU clusters); rows hold pickled `CaptionTask`s."""

    spec: ModelSpec
    batch_size: int = 16

    def __post_init__(self) -> None:
        _check(self.spec, "vllm")

    @property
    def resources(self) -> Resources:
        return model_resources(self.spec)

    def config(self) -> vLLMEngineProcessorConfig:
        from serve.llm import batch_engine_config

        return batch_engine_config(self.spec, batch_size=self.batch_size, concurrency=1, should_continue_on_error=True,
                                   chat_template_stage=True, tokenize_stage=False, detokenize_stage=False)

    @staticmethod
    def preprocess(row: dict[str, Any]) -> dict[str, Any]:
        task: CaptionTask = pickle.loads(row[COLUMN])
        return {**vllm_request(task), "task": row[COLUMN]}

    @staticmethod
    def postprocess(row: dict[str, Any]) -> dict[str, Any]:
        task: CaptionTask = pickle.loads(row["task"])
        error = row.get("__inference_error__")
        if error:
            return {COLUMN: pickle.dumps(Failed(task.source, "caption", f"shot {task.shot.index}: {str(error)[:500]}"))}
        prompt_tokens = int(row.get("num_input_tokens") or 0)
        caption = ShotCaption(task.shot, task.frames, str(row.get("generated_text") or ""), prompt_tokens, -1,
                              int(row.get("num_generated_tokens") or 0), "stop", -1)
        return {COLUMN: pickle.dumps(Captioned(task.video, caption, task.shots))}

    def __call__(self, ds: Dataset) -> Dataset:
        from ray.data.llm import build_processor

        processor = build_processor(self.config(), preprocess=self.preprocess, postprocess=self.postprocess)
        return processor(ds)


