"""`batch.chat`: an OpenAI batch of chat or completion requests."""

from __future__ import annotations

from kinds.base import KindInfo, ModelUse
from kinds.batch_common import BATCH_FILES, BATCH_HOOKS, BatchSpec


class BatchChatSpec(BatchSpec):
    """OpenAI batch of /v1/chat/completions or /v1/completions requests, run with vLLM on Ray Data."""

    def models_used(self) -> list[ModelUse]:
        """The lines name their models; the registry's first LLM stands for them (the usual single-model batch)."""
        return [ModelUse("llm")]


KIND = KindInfo("batch.chat", BatchChatSpec, pipeline="pipelines.batch_chat", outputs=BATCH_FILES, hooks=BATCH_HOOKS)
