"""Load tiny-llama with vLLM on CPU, generate, print the outputs as JSON.

Usage: ``python vllm_generate.py MODEL_DIR [ENGINE_KWARGS_JSON]``.

Runs in its own process (vLLM spawns engine processes, which re-import
``__main__``, hence the guard). vLLM logs to stdout as well, so the result
is the one line that starts with :data:`RESULT_PREFIX`.
"""

from __future__ import annotations

import json
import os
import sys
import time

# Set before vllm is imported. Nothing may reach a model hub.
ENV = {
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}

# Used when no kwargs are given; the test passes the registry's demo kwargs.
DEFAULT_ENGINE_KWARGS = {
    "max_model_len": 512,
    "max_num_seqs": 4,
    "enforce_eager": True,
    "kv_cache_memory_bytes": 256 << 20,
}

PROMPTS = ["Tell me a story about a dragon and a knight.", "A painting of a castle at sunset"]
CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello, how are you?"},
]
MAX_TOKENS = 8
RESULT_PREFIX = "VLLM_RESULT "


def _describe(out) -> dict:
    completion = out.outputs[0]
    return {
        "prompt": out.prompt,
        "prompt_token_ids": list(out.prompt_token_ids or []),
        "text": completion.text,
        "token_ids": list(completion.token_ids),
        "finish_reason": completion.finish_reason,
    }


def main(model: str, engine_kwargs: dict) -> dict:
    for key, value in ENV.items():
        os.environ.setdefault(key, value)
    t0 = time.monotonic()
    import vllm
    from vllm import LLM, SamplingParams

    llm = LLM(model=model, seed=0, **engine_kwargs)
    load_s = time.monotonic() - t0
    # ignore_eos: random weights may well sample EOS first; we want a fixed count.
    params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0, ignore_eos=True)
    t1 = time.monotonic()
    generated = llm.generate(PROMPTS, params, use_tqdm=False)
    chat = llm.chat(CHAT, params, add_generation_prompt=True, use_tqdm=False)
    generate_s = time.monotonic() - t1
    tokenizer = llm.get_tokenizer()
    return {
        "vllm_version": vllm.__version__,
        "dtype": str(llm.llm_engine.model_config.dtype),
        "engine_kwargs": engine_kwargs,
        "generate": [_describe(o) for o in generated],
        "chat": [_describe(o) for o in chat],
        "bos_token_id": tokenizer.bos_token_id,
        "assistant_token_id": tokenizer.convert_tokens_to_ids("<|assistant|>"),
        "load_s": round(load_s, 2),
        "generate_s": round(generate_s, 2),
    }


if __name__ == "__main__":
    kwargs = json.loads(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_ENGINE_KWARGS
    print(RESULT_PREFIX + json.dumps(main(sys.argv[1], kwargs)), flush=True)
