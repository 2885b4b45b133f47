"""The Serve LLM stage: ray.data.llm's Serve deployment processor, aimed at the deployment ray.serve.llm made."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.stages.models.llm_serve import CALLS_PER_BLOCK, ServeLLMStage, _response, deployment_name, in_flight
from serve.registry import ModelSpec

REPO = Path(__file__).resolve().parents[4]
TINY = ModelSpec(name="tiny-llama", kind="llm", source="/models/tiny-llama", batch_engine="serve")


def test_the_stage_calls_the_deployment_build_openai_app_names_for_the_model() -> None:
    config = ServeLLMStage(TINY).config()
    assert (config.app_name, config.deployment_name) == ("llm", "LLMServer:tiny-llama")
    assert deployment_name(TINY.model_copy(update={"name": "meta-llama/Llama-3.1-8B"})) == "LLMServer:meta-llama--Llama-3_1-8B"
    assert set(config.dtype_mapping) == {"ChatCompletionRequest", "CompletionRequest"}
    assert config.should_continue_on_error and config.concurrency == 1


def test_a_batch_keeps_few_requests_at_the_shared_replicas() -> None:
    # one replica taking 8 at once: 16 in flight, within the 64 its callers may queue
    assert in_flight(TINY) == 16 and ServeLLMStage(TINY).batch_rows * CALLS_PER_BLOCK == 16
    wide = TINY.model_copy(update={"max_replicas": 4, "max_ongoing_requests": 32, "max_queued_requests": 10})
    assert in_flight(wide) == 4 * 32 + 10  # never more than the handle may queue: it would be refused
    assert ServeLLMStage(wide).batch_rows * CALLS_PER_BLOCK <= in_flight(wide)


def test_answers_become_the_same_columns_as_the_job_engines() -> None:
    chat = {"choices": [{"message": {"role": "assistant", "content": " aft"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 1}}
    text = {"choices": [{"text": "once", "finish_reason": "length"}], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    refused = {"error": {"message": "This model's maximum context length is 1024 tokens", "code": 400}}
    assert _response(chat) == {"generated_text": " aft", "finish_reason": "stop", "num_input_tokens": 9,
                               "num_generated_tokens": 1, "error": None}
    assert (_response(text)["generated_text"], _response(text)["finish_reason"]) == ("once", "length")
    assert _response(refused) == {"error": "This model's maximum context length is 1024 tokens"}


def test_only_llms_take_the_serve_engine() -> None:
    assert ModelSpec(name="m", kind="llm", source="s").batch_engine == "job"
    with pytest.raises(ValidationError, match="batch_engine 'serve' is for llm models, not diffusion"):
        ModelSpec(name="m", kind="diffusion", source="s", batch_engine="serve")
    with pytest.raises(ValidationError, match="batch_engine"):
        ModelSpec(name="m", kind="llm", source="s", batch_engine="elsewhere")


def test_the_sending_side_never_loads_vllm() -> None:
    """A request pickles as a reference to vLLM's model (the replica, vLLM loaded, builds it: the serve batches prove it)."""
    script = """
import pickle, pickletools, sys
from pipelines.stages.models.llm_serve import ChatRequest, CompletionRequest
chat = pickle.dumps(ChatRequest(model="tiny-llama", messages=[{"role": "user", "content": "hi"}], max_tokens=4))
text = pickle.dumps(CompletionRequest(model="tiny-llama", prompt="once", max_tokens=2))
assert "vllm" not in sys.modules, "the sending side loaded vLLM"
for data, model in ((chat, "ChatCompletionRequest"), (text, "CompletionRequest")):
    names = {arg for _, arg, _ in pickletools.genops(data) if isinstance(arg, str)}
    assert {"ray.serve.llm.openai_api_models", model, "model_validate"} <= names, names
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
