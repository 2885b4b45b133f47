"""`batch.chat`: an OpenAI batch of chat/completions requests through the shared LLM stage (vLLM).

The model registry names the weights and engine, as it does for online
serving (`pipelines.stages.models.llm`); each request's body sets its
sampling parameters. A request vLLM refuses (say, a prompt past the context)
becomes one line in the error file; the others complete. Each answer's
``finish_reason`` is read from its generated tokens and text
(`pipelines.stages.models.finish_reason`), and its id is unique across batches.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from farm.openai.batch_lines import error_line, output_line
from farm.runner.context import JobContext
from pipelines.batch_common import BatchRun, by_model, run_batch
from pipelines.stages.models.finish_reason import eos_token_ids, finish, stop_strings
from pipelines.stages.models.llm import LLMStage
from serve.llm import engine_kwargs

CHAT = "/v1/chat/completions"
SAMPLING_KEYS = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty")


def sampling_params(body: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {k: body[k] for k in SAMPLING_KEYS if body.get(k) is not None}
    params["max_tokens"] = int(body.get("max_completion_tokens") or body.get("max_tokens") or 16)
    if stop := stop_strings(body.get("stop")):
        params["stop"] = stop
    params["include_stop_str_in_output"] = True  # the text's end shows a matched stop string (finish_reason)
    return params


def _engine_row(row: dict[str, Any], body: dict[str, Any], **prompt: Any) -> dict[str, Any]:
    params = sampling_params(body)
    # max_tokens and stop also ride outside sampling_params: the engine stage consumes that
    # column, and the finish reason is read against them
    return {"line": row["line"], "custom_id": row["custom_id"], "served_model": body["model"], **prompt,
            "sampling_params": params, "max_tokens": params["max_tokens"], "stop": json.dumps(params.get("stop", []))}


def _preprocess_chat(row: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(row["body"])
    return _engine_row(row, body, messages=body["messages"])


def _preprocess_completion(row: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(row["body"])
    return _engine_row(row, body, prompt=body["prompt"])


def postprocess(eos: Collection[int], max_model_len: int | None) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The engine's row → what an output line needs, with the finish reason read from the tokens and text."""
    def _postprocess(row: dict[str, Any]) -> dict[str, Any]:
        generated = row.get("generated_tokens")
        tokens = [int(t) for t in generated] if generated is not None else []
        prompt_tokens = int(row.get("num_input_tokens") or 0)
        reason, text = finish(tokens, row.get("generated_text") or "", max_tokens=int(row.get("max_tokens") or 16),
                              stop=json.loads(row.get("stop") or "[]"), eos_token_ids=eos,
                              prompt_tokens=prompt_tokens, max_model_len=max_model_len)
        return {
            "line": int(row["line"]), "custom_id": row["custom_id"], "model": row["served_model"],
            "text": text, "finish_reason": reason, "error": row.get("__inference_error__") or None,
            "prompt_tokens": prompt_tokens, "completion_tokens": int(row.get("num_generated_tokens") or len(tokens)),
        }

    return _postprocess


def to_line(endpoint: str) -> Any:
    def convert(row: dict[str, Any]) -> tuple[bool, str]:
        # rows vLLM refused skip the postprocess step and keep ray.data.llm's own error column
        error = row.get("error") or row.get("__inference_error__")
        if error:
            return False, error_line(row["custom_id"], "invalid_request", str(error)[:1000])
        prompt, completion = int(row.get("prompt_tokens") or 0), int(row.get("completion_tokens") or 0)
        finish_reason = row.get("finish_reason") or "stop"
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        created = int(time.time())
        model = row.get("model") or row.get("served_model")
        if endpoint == CHAT:
            body = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": created, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": row.get("text") or ""}, "finish_reason": finish_reason}],
                    "usage": usage}
        else:
            body = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": created, "model": model,
                    "choices": [{"index": 0, "text": row.get("text") or "", "finish_reason": finish_reason}], "usage": usage}
        return True, output_line(row["custom_id"], body)

    return convert


def run(ctx: JobContext) -> None:
    registry = ctx.models

    def execute(batch: BatchRun, requests: Path) -> None:
        ctx.connect_ray()
        chat = batch.info.endpoint == CHAT
        preprocess = _preprocess_chat if chat else _preprocess_completion
        for name, ds in by_model(requests):
            spec = registry.get(name)
            stage = LLMStage(spec, chat=chat)
            done = postprocess(eos_token_ids(spec.source), engine_kwargs(spec).get("max_model_len"))
            batch.consume(stage(ds, preprocess=preprocess, postprocess=done).iter_rows(), to_line(batch.info.endpoint))

    run_batch(ctx, {m.name for m in registry.of_kind("llm")}, execute)
