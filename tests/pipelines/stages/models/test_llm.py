"""The LLM stage: ray.data.llm's processor from the registry entry, tuned for streaming batches."""

from __future__ import annotations

from pathlib import Path

from pipelines.stages.base import Resources
from pipelines.stages.models.llm import BATCH_ROWS, BLOCK_ROWS, LLMStage, blocks_in_engine, pending_requests
from serve.demo import DEMO_LLM_ENGINE_KWARGS, demo_registry
from serve.llm import batch_engine_config
from serve.registry import ModelSpec


def test_the_stage_runs_the_registrys_engine(tmp_path: Path) -> None:
    spec = demo_registry(tmp_path).get("tiny-llama")
    config = LLMStage(spec).config()
    same = batch_engine_config(spec)
    assert (config.model_source, config.engine_kwargs, config.placement_group_config) == (
        same.model_source, same.engine_kwargs, same.placement_group_config)
    pending = pending_requests(DEMO_LLM_ENGINE_KWARGS)
    assert (config.batch_size, config.concurrency, config.max_pending_requests) == (BATCH_ROWS, 1, pending)
    assert config.max_concurrent_batches == config.max_tasks_in_flight_per_actor == blocks_in_engine(pending)
    assert config.should_continue_on_error


def test_chat_applies_the_template_and_vllm_tokenizes(tmp_path: Path) -> None:
    spec = demo_registry(tmp_path).get("tiny-llama")
    chat, plain = LLMStage(spec).config(), LLMStage(spec, chat=False).config()
    assert (chat.chat_template_stage, plain.chat_template_stage) == (True, False)
    for config in (chat, plain):
        assert (config.tokenize_stage, config.detokenize_stage) == (False, False)


def test_engine_tuning() -> None:
    assert pending_requests({"max_num_seqs": 8}) == 32 and pending_requests({}) == 1024
    assert blocks_in_engine(32) == 2 and blocks_in_engine(1024) == 2 * 1024 // BLOCK_ROWS


def test_resources_come_from_the_registry() -> None:
    spec = ModelSpec(name="big", kind="llm", source="org/big", gpus=2, accelerator_type="A10G", cpus=4)
    assert LLMStage(spec).resources == Resources(cpus=4, gpus=2, accelerator_type="A10G")
