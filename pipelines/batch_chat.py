"""`batch.chat`: OpenAI batch of chat/completions requests through `ray.data.llm` (vLLM).

The same model registry as online serving names the weights; each request's
body sets its sampling parameters. A request vLLM refuses (say, a prompt past
the context) becomes one line in the error file; the others complete.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from pipelines.batch_common import BatchRun, error_line, output_line, ray_init, run_batch
from pipelines.context import JobContext

BATCH_ROWS = 32  # rows per engine call
# Ray Data runs up to 4 calls of one block at once (RAY_DATA_DEFAULT_ASYNC_BATCH_UDF_MAX_CONCURRENCY),
# so a 4-call block is worked as a whole.
BLOCK_ROWS = 4 * BATCH_ROWS  # rows per Ray Data block, one engine-actor task each
SAMPLING_KEYS = ("temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty")


def sampling_params(body: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {k: body[k] for k in SAMPLING_KEYS if body.get(k) is not None}
    params["max_tokens"] = int(body.get("max_completion_tokens") or body.get("max_tokens") or 16)
    return params


def pending_requests(engine_kwargs: dict[str, Any]) -> int:
    """Requests handed to vLLM at once: enough queued that a finished sequence is replaced at once.

    ray.data.llm's default (1.1 × max_num_seqs) leaves the scheduler short of
    work whenever several sequences finish in one step; bare ``LLM.generate``
    queues everything. Four times the batch keeps it full without holding the
    whole file in the engine.
    """
    return 4 * int(engine_kwargs.get("max_num_seqs") or 256)


def blocks_in_engine(pending: int) -> int:
    """Blocks the engine's actor works at once: twice the rows vLLM may hold, so it never waits for input.

    Few enough that blocks finish in order (results stream); at least two, so
    one block's slowest request never leaves the engine idle.
    """
    return max(2, math.ceil(2 * pending / BLOCK_ROWS))


def _engine_row(row: dict[str, Any], body: dict[str, Any], **prompt: Any) -> dict[str, Any]:
    params = sampling_params(body)
    # max_tokens also rides outside sampling_params: the engine stage consumes that column,
    # and the output line needs it to tell "length" from "stop"
    return {"line": row["line"], "custom_id": row["custom_id"], "served_model": body["model"], **prompt,
            "sampling_params": params, "max_tokens": params["max_tokens"]}


def _preprocess_chat(row: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(row["body"])
    return _engine_row(row, body, messages=body["messages"])


def _preprocess_completion(row: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(row["body"])
    return _engine_row(row, body, prompt=body["prompt"])


def _postprocess(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "line": int(row["line"]), "custom_id": row["custom_id"], "model": row["served_model"],
        "text": row.get("generated_text") or "", "error": row.get("__inference_error__") or None,
        "prompt_tokens": int(row.get("num_input_tokens") or 0), "completion_tokens": int(row.get("num_generated_tokens") or 0),
        "max_tokens": int(row.get("max_tokens") or 16),
    }


def to_line(endpoint: str) -> Any:
    def convert(row: dict[str, Any]) -> tuple[bool, str]:
        # rows vLLM refused skip the postprocess step and keep ray.data.llm's own error column
        error = row.get("error") or row.get("__inference_error__")
        if error:
            return False, error_line(row["custom_id"], "invalid_request", str(error)[:1000])
        prompt, completion = int(row.get("prompt_tokens") or 0), int(row.get("completion_tokens") or 0)
        finish = "length" if completion >= int(row.get("max_tokens") or 16) else "stop"
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        created = int(time.time())
        if endpoint == "/v1/chat/completions":
            body = {"id": f"chatcmpl-{row['line']}", "object": "chat.completion", "created": created, "model": row.get("model") or row.get("served_model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": row.get("text") or ""}, "finish_reason": finish}],
                    "usage": usage}
        else:
            body = {"id": f"cmpl-{row['line']}", "object": "text_completion", "created": created, "model": row.get("model") or row.get("served_model"),
                    "choices": [{"index": 0, "text": row.get("text") or "", "finish_reason": finish}], "usage": usage}
        return True, output_line(row["custom_id"], body)

    return convert


def run(ctx: JobContext) -> None:
    from serve.registry import ModelRegistry

    registry = ModelRegistry.from_settings(ctx.settings)
    models = {m.name for m in registry.of_kind("llm")}

    def execute(batch: BatchRun, requests: Path) -> None:
        import ray.data
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig

        ray_init()
        # One file reads as one block, and ray.data.llm works a block as one task whose
        # results leave the actor only when the whole block is done. Small blocks, few
        # of them in the actor at once: blocks finish in the order their requests
        # entered the engine, so results (and the batch's progress) stream back from
        # the start instead of all arriving at the end. (One call per block streams
        # too, but its per-task costs seemed to take a sixth of the throughput on 2 cores.)
        ds = ray.data.read_json(f"local://{requests}", lines=True).repartition(target_num_rows_per_block=BLOCK_ROWS)
        with requests.open() as lines:
            used = {json.loads(json.loads(line)["body"])["model"] for line in lines}
        chat = batch.batch.endpoint == "/v1/chat/completions"
        # one model per batch is the common case; several run one after another
        for name in sorted(used):
            spec = registry.get(name)
            pending = pending_requests(spec.engine_kwargs)
            blocks = blocks_in_engine(pending)
            config = vLLMEngineProcessorConfig(
                # Progress and usage come from the farm's own records; vLLM's per-step stats and
                # their export to Ray's metrics cost the engine's front end CPU for nothing here.
                model_source=spec.source, engine_kwargs={"disable_log_stats": True, **spec.engine_kwargs},
                log_engine_metrics=False, batch_size=BATCH_ROWS, concurrency=1,
                max_concurrent_batches=blocks, max_tasks_in_flight_per_actor=blocks,
                should_continue_on_error=True, chat_template_stage=chat,
                # vLLM tokenizes and detokenizes in its own front end, as bare LLM.generate
                # does; the separate Ray Data stages only cost a worker each and a copy.
                tokenize_stage=False, detokenize_stage=False,
                max_pending_requests=pending,
                accelerator_type=spec.accelerator_type,
                placement_group_config={"bundles": [{"CPU": 1, **({"GPU": spec.gpus} if spec.gpus else {})}]},
            )
            processor = build_processor(config, preprocess=_preprocess_chat if chat else _preprocess_completion, postprocess=_postprocess)
            # with one model every row is its own: no second parse of each body to filter
            subset = ds if len(used) == 1 else ds.filter(lambda r, n=name: json.loads(r["body"])["model"] == n)
            batch.consume(processor(subset).iter_rows(), to_line(batch.batch.endpoint))

    run_batch(ctx, models, execute)
