"""`batch.chat`: an OpenAI batch of chat/completions requests through vLLM.

The model registry names the weights and engine, as it does for online
serving, and where a batch runs (``batch_engine``): ``job``, a vLLM engine
in this batch's Ray Job (`pipelines.stages.models.llm`), or ``serve``, the
model's warm deployment in the farm's Serve LLM application
(`pipelines.stages.models.llm_serve`; if it is not running, the batch fails
before any request runs, saying so). Each request's body sets its sampling
parameters, the same ones on both engines. A request vLLM refuses (say, a
prompt past the context) becomes one line in the error file; the others
complete. Each answer's ``finish_reason`` is vLLM's own on ``serve``, and on
``job`` (where ``ray.data.llm`` reports none) read from its generated tokens
and text (`pipelines.stages.models.finish_reason`); its id is unique across
batches.
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
from pipelines.batch_common import BatchInvalid, BatchRun, by_model, models_of, run_batch
from pipelines.stages.models.finish_reason import eos_token_ids, finish, stop_strings
from pipelines.stages.models.llm import LLMStage
from pipelines.stages.models.llm_serve import DeploymentUnavailable, ServeLLMStage, check_running
from serve.llm import engine_kwargs
from serve.registry import ModelRegistry

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


def _serve_request(row: dict[str, Any]) -> dict[str, Any]:
    """A line → the deployment's request: the same sampling parameters as the job engine gets, vLLM's own stop handling."""
    body = json.loads(row["body"])
    params = {k: v for k, v in sampling_params(body).items() if k != "include_stop_str_in_output"}
    prompt = {"messages": body["messages"]} if "messages" in body else {"prompt": body["prompt"]}
    return {"line": row["line"], "custom_id": row["custom_id"], "served_model": body["model"],
            "request": {"model": body["model"], **prompt, **params}, "request_id": f"batch-{uuid.uuid4().hex}"}


def serve_postprocess(row: dict[str, Any]) -> dict[str, Any]:
    """The deployment's row → what an output line needs, with vLLM's own finish reason."""
    return {
        "line": int(row["line"]), "custom_id": row["custom_id"], "model": row["served_model"],
        "text": row.get("generated_text") or "", "finish_reason": row.get("finish_reason") or "stop",
        "error": row.get("error") or None, "prompt_tokens": int(row.get("num_input_tokens") or 0),
        "completion_tokens": int(row.get("num_generated_tokens") or 0),
    }


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


def check_engines(registry: ModelRegistry, requests: Path) -> None:
    """Before any request runs: every ``serve`` model the batch names has its deployment running."""
    for name in models_of(requests):
        spec = registry.get(name)
        if spec.batch_engine == "serve":
            try:
                check_running(spec)
            except DeploymentUnavailable as exc:
                raise BatchInvalid(str(exc), code="model_unavailable", param="model") from None


def run(ctx: JobContext) -> None:
    registry = ctx.models

    def check(requests: Path) -> None:
        ctx.connect_ray()
        check_engines(registry, requests)

    def execute(batch: BatchRun, requests: Path) -> None:
        ctx.connect_ray()
        chat = batch.info.endpoint == CHAT
        for name, ds in by_model(requests):
            spec = registry.get(name)
            if spec.batch_engine == "serve":
                rows = ServeLLMStage(spec, chat=chat)(ds, preprocess=_serve_request, postprocess=serve_postprocess)
            else:
                done = postprocess(eos_token_ids(spec.source), engine_kwargs(spec).get("max_model_len"))
                rows = LLMStage(spec, chat=chat)(ds, preprocess=_preprocess_chat if chat else _preprocess_completion,
                                                 postprocess=done)
            batch.consume(rows.iter_rows(), to_line(batch.info.endpoint))

    run_batch(ctx, {m.name for m in registry.of_kind("llm")}, execute, check=check)
