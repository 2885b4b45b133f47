"""`batch.chat`: an OpenAI batch of chat/completions requests through the shared LLM stage (vLLM).

The model registry names the weights and engine, as it does for online
serving (`pipelines.stages.models.llm`); each request's body sets its
sampling parameters. A request vLLM refuses (say, a prompt past the context)
becomes one line in the error file; the others complete.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from farm.openai.batch_lines import error_line, output_line
from farm.runner.context import JobContext
from pipelines.batch_common import BatchRun, by_model, run_batch
from pipelines.stages.models.llm import LLMStage

CHAT = "/v1/chat/completions"
SAMPLING_KEYS = ("temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty")


def sampling_params(body: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {k: body[k] for k in SAMPLING_KEYS if body.get(k) is not None}
    params["max_tokens"] = int(body.get("max_completion_tokens") or body.get("max_tokens") or 16)
    return params


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
        if endpoint == CHAT:
            body = {"id": f"chatcmpl-{row['line']}", "object": "chat.completion", "created": created, "model": row.get("model") or row.get("served_model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": row.get("text") or ""}, "finish_reason": finish}],
                    "usage": usage}
        else:
            body = {"id": f"cmpl-{row['line']}", "object": "text_completion", "created": created, "model": row.get("model") or row.get("served_model"),
                    "choices": [{"index": 0, "text": row.get("text") or "", "finish_reason": finish}], "usage": usage}
        return True, output_line(row["custom_id"], body)

    return convert


def run(ctx: JobContext) -> None:
    registry = ctx.models

    def execute(batch: BatchRun, requests: Path) -> None:
        ctx.connect_ray()
        chat = batch.info.endpoint == CHAT
        preprocess = _preprocess_chat if chat else _preprocess_completion
        for name, ds in by_model(requests):
            stage = LLMStage(registry.get(name), chat=chat)
            batch.consume(stage(ds, preprocess=preprocess, postprocess=_postprocess).iter_rows(), to_line(batch.info.endpoint))

    run_batch(ctx, {m.name for m in registry.of_kind("llm")}, execute)
