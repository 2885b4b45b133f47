"""Why a generation ended (OpenAI's ``finish_reason``), read from what ``ray.data.llm`` returns.

ray.data.llm (Ray 2.60) hands back the generated token ids and text, not
vLLM's finish reason. vLLM ends a sequence on, in the order it checks: an
end-of-sequence token, a stop string, ``max_tokens``, the model's context
length. The engine is asked to keep a matched stop string in the text
(``include_stop_str_in_output``), so the text's end tells a stop string
apart from a cut; :func:`finish` removes it again, as OpenAI's answers
leave it out.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Literal

FinishReason = Literal["stop", "length"]


def stop_strings(stop: str | list[str] | None) -> list[str]:
    """A request's ``stop`` (one string or a list, as OpenAI takes it) as a list of non-empty strings."""
    return [s for s in ([stop] if isinstance(stop, str) else stop or []) if isinstance(s, str) and s]


def finish(tokens: Sequence[int], text: str, *, max_tokens: int, stop: Sequence[str], eos_token_ids: Collection[int],
           prompt_tokens: int = 0, max_model_len: int | None = None) -> tuple[FinishReason, str]:
    """(finish_reason, the text as OpenAI returns it) of one generation.

    ``text`` is the engine's, with a matched stop string kept at its end.
    ``stop`` is in the request's order: vLLM stops on the first of them it
    finds, so the first that ends the text is the one it matched.
    """
    if tokens and tokens[-1] in eos_token_ids:
        return "stop", text
    for s in stop:
        if s and text.endswith(s):
            return "stop", text[: len(text) - len(s)]
    if len(tokens) >= max_tokens or (max_model_len is not None and prompt_tokens + len(tokens) >= max_model_len):
        return "length", text
    return "stop", text  # ended before every limit: an end-of-sequence token the model's files did not name


def eos_token_ids(source: str) -> frozenset[int]:
    """The model's end-of-sequence token ids (generation config and model config), as vLLM stops on them.

    Read from the files of a local model directory or the hub cache, never
    the network; empty when neither has them (then a generation that ends on
    one exactly at ``max_tokens`` reads as ``length``).
    """
    ids: set[int] = set()
    for name in ("generation_config.json", "config.json"):
        path = _model_file(source, name)
        if path is None:
            continue
        try:
            value = json.loads(path.read_text()).get("eos_token_id")
        except (OSError, ValueError, AttributeError):
            continue
        ids.update(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int))
    return frozenset(ids)


def _model_file(source: str, name: str) -> Path | None:
    local = Path(source).expanduser()
    if local.is_dir():
        return local / name if (local / name).is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source, name)
    except Exception:  # not a hub id either
        return None
    return Path(found) if isinstance(found, str) else None
