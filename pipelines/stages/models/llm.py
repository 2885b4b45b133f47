"""A stage that holds a vLLM engine: ``ray.data.llm``'s processor, configured from the model registry.

The engine's config comes from :func:`serve.llm.batch_engine_config`, the
same derivation as the Serve config of the model; this stage adds only how
a batch feeds it. Rows in: ``messages`` (chat, the model's chat template is
applied) or ``prompt``, and ``sampling_params``. Rows out: ray.data.llm's
``generated_text``, ``num_input_tokens``, ``num_generated_tokens``, and
``__inference_error__`` for a request vLLM refused (the others go on).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.stages.base import Resources
from pipelines.stages.models import model_resources
from serve.llm import batch_engine_config, engine_kwargs
from serve.registry import ModelSpec

if TYPE_CHECKING:
    from ray.data import Dataset
    from ray.data.llm import vLLMEngineProcessorConfig

BATCH_ROWS = 32  # rows per engine call
# Ray Data runs up to 4 calls of one block at once (RAY_DATA_DEFAULT_ASYNC_BATCH_UDF_MAX_CONCURRENCY),
# so a 4-call block is worked as a whole.
BLOCK_ROWS = 4 * BATCH_ROWS  # rows per Ray Data block, one engine-actor task each

Row = dict[str, Any]


def pending_requests(kwargs: dict[str, Any]) -> int:
    """Requests handed to vLLM at once: enough queued that a finished sequence is replaced at once.

    ray.data.llm's default (1.1 × max_num_seqs) leaves the scheduler short of
    work whenever several sequences finish in one step; bare ``LLM.generate``
    queues everything. Four times the batch keeps it full without holding the
    whole file in the engine.
    """
    return 4 * int(kwargs.get("max_num_seqs") or 256)


def blocks_in_engine(pending: int) -> int:
    """Blocks the engine's actor works at once: twice the rows vLLM may hold, so it never waits for input.

    Few enough that blocks finish in order (results stream); at least two, so
    one block's slowest request never leaves the engine idle.
    """
    return max(2, math.ceil(2 * pending / BLOCK_ROWS))


@dataclass(frozen=True)
class LLMStage:
    """One model's vLLM engine over a dataset of requests; ``chat`` applies the model's chat template."""

    spec: ModelSpec
    chat: bool = True

    @property
    def resources(self) -> Resources:
        return model_resources(self.spec)

    def config(self) -> vLLMEngineProcessorConfig:
        pending = pending_requests(engine_kwargs(self.spec))
        blocks = blocks_in_engine(pending)
        return batch_engine_config(
            self.spec, batch_size=BATCH_ROWS, concurrency=1,
            max_concurrent_batches=blocks, max_tasks_in_flight_per_actor=blocks,
            should_continue_on_error=True, chat_template_stage=self.chat,
            # vLLM tokenizes and detokenizes in its own front end, as bare LLM.generate
            # does; the separate Ray Data stages only cost a worker each and a copy.
            tokenize_stage=False, detokenize_stage=False,
            max_pending_requests=pending,
        )

    def __call__(self, ds: Dataset, *, preprocess: Callable[[Row], Row], postprocess: Callable[[Row], Row]) -> Dataset:
        """The generations of ``ds``'s rows, block after block as the engine finishes them."""
        from ray.data.llm import build_processor

        # ray.data.llm works a block as one task whose results leave the actor only when
        # the whole block is done. Small blocks, few of them in the actor at once: blocks
        # finish in the order their requests entered the engine, so results stream back
        # from the start instead of all arriving at the end. (One call per block streams
        # too, but its per-task costs seemed to take a sixth of the throughput on 2 cores.)
        processor = build_processor(self.config(), preprocess=preprocess, postprocess=postprocess)
        return processor(ds.repartition(target_num_rows_per_block=BLOCK_ROWS))
