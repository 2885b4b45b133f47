"""The tiny demo models: build guarantees, transformers, diffusers, and vLLM (the session's Serve deployment)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from serve import demo_models as dm


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _contents(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


# -- build guarantees ------------------------------------------------------


def test_build_returns_complete_model_dirs(demo_models):
    assert set(demo_models) == {"tiny-llama", "tiny-sd", "tiny-vlm"}
    for name, path in demo_models.items():
        assert path.is_absolute() and path.name == name
        assert dm.is_complete(path)
        assert json.loads((path / dm.MARKER).read_text())["recipe"] == dm.RECIPE_VERSION
    llama = demo_models["tiny-llama"]
    for file in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (llama / file).is_file(), file
    sd = demo_models["tiny-sd"]
    for file in ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
                 "tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json"):
        assert (sd / file).is_file(), file


def test_second_build_rebuilds_nothing(demo_models):
    cache = demo_models["tiny-llama"].parent
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")}
    again = dm.build_demo_models(cache)
    assert again == demo_models
    after = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")}
    assert after == before, "a finished build was written again"


def test_interrupted_build_is_not_complete_and_is_redone(tmp_path, demo_models):
    # A builder killed mid-way leaves its temporary folder; a hand-made or
    # older target without the marker must not count as built either.
    leftover = tmp_path / ".tiny-llama.tmp-dead"
    leftover.mkdir()
    (leftover / "config.json").write_text("{}")
    half = tmp_path / "tiny-sd"
    half.mkdir()
    (half / "model_index.json").write_text("{}")
    assert not dm.is_complete(leftover) and not dm.is_complete(half)

    t0 = time.perf_counter()
    built = dm.build_demo_models(tmp_path)
    print(f"\nfresh build of both demo models: {time.perf_counter() - t0:.2f}s")

    assert all(dm.is_complete(p) for p in built.values())
    assert not leftover.exists()
    assert not list(tmp_path.glob(".*.tmp-*"))
    # Deterministic: the same bytes (weights, tokenizers, configs) as the session build.
    for name, path in built.items():
        assert oct(path.stat().st_mode & 0o777) == oct(0o755)
        assert _contents(path) == _contents(demo_models[name]), name


def test_failed_build_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    def broken(path: Path) -> None:
        (path / "model_index.json").write_text("{}")
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(dm, "build_tiny_llama", lambda path: (path / "config.json").write_text("{}"))
    monkeypatch.setattr(dm, "build_tiny_sd", broken)
    with pytest.raises(RuntimeError, match="killed mid-build"):
        dm.build_demo_models(tmp_path)
    assert dm.is_complete(tmp_path / "tiny-llama")
    assert not (tmp_path / "tiny-sd").exists()
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_outdated_recipe_and_force_rebuild(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(dm, "build_tiny_llama", lambda path: calls.append("llama"))
    monkeypatch.setattr(dm, "build_tiny_sd", lambda path: calls.append("sd"))
    monkeypatch.setattr(dm, "build_tiny_vlm", lambda path: calls.append("vlm"))
    dm.build_demo_models(tmp_path)
    dm.build_demo_models(tmp_path)
    assert calls == ["llama", "sd", "vlm"]
    dm.build_demo_models(tmp_path, force=True)
    assert calls == ["llama", "sd", "vlm"] * 2
    monkeypatch.setattr(dm, "RECIPE_VERSION", "next")
    dm.build_demo_models(tmp_path)
    assert calls == ["llama", "sd", "vlm"] * 3


# -- tiny-llama with transformers -----------------------------------------


def test_llama_config_matches_tokenizer(demo_models):
    from transformers import AutoConfig, AutoTokenizer

    path = demo_models["tiny-llama"]
    config = AutoConfig.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert config.model_type == "llama"
    assert (config.hidden_size, config.num_attention_heads, config.num_key_value_heads) == (128, 2, 2)
    assert config.head_dim == 64 and config.num_hidden_layers == 2
    assert config.max_position_embeddings == 1024
    assert config.vocab_size == len(tokenizer)
    assert 300 <= len(tokenizer) <= 2000
    assert None not in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert config.eos_token_id == tokenizer.eos_token_id
    generation = json.loads((path / "generation_config.json").read_text())
    assert generation["eos_token_id"] == tokenizer.eos_token_id


def test_llama_tokenizer_splits_words_and_has_chat_template(demo_models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_models["tiny-llama"])
    prompt = "Tell me a story about a dragon and a knight."
    ids = tokenizer(prompt).input_ids
    assert ids[0] == tokenizer.bos_token_id
    assert len(ids) < len(prompt) / 2  # word pieces, not bytes
    assert tokenizer.decode(ids, skip_special_tokens=True) == prompt

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|begin_of_text|><|system|>\nBe brief.<|end_of_text|>\n"
        "<|user|>\nHello!<|end_of_text|>\n<|assistant|>\n"
    )
    assert not tokenizer.apply_chat_template(messages, tokenize=False).endswith("<|assistant|>\n")
    # Older readers find the template in tokenizer_config.json too.
    assert "chat_template" in json.loads((demo_models["tiny-llama"] / "tokenizer_config.json").read_text())


def test_llama_generates_with_transformers(demo_models):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = demo_models["tiny-llama"]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4


# -- tiny-sd with diffusers ------------------------------------------------


@pytest.fixture(scope="module")
def text_to_image(demo_models):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(demo_models["tiny-sd"])
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_text_to_image_64(text_to_image):
    image = text_to_image(
        "a castle at sunset", num_inference_steps=20, generator=torch.Generator().manual_seed(0)
    ).images[0]
    assert image.size == (64, 64)  # the default size: unet sample 8 x vae factor 8
    assert np.asarray(image).std() > 1.0


def test_text_to_image_is_seeded(text_to_image):
    def run(seed: int) -> np.ndarray:
        generator = torch.Generator().manual_seed(seed)
        return np.asarray(text_to_image("a boat", num_inference_steps=4, generator=generator).images[0])

    assert np.array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))


def test_image_to_image(demo_models):
    from diffusers import StableDiffusionImg2ImgPipeline
    from PIL import Image

    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(demo_models["tiny-sd"])
    pipe.set_progress_bar_config(disable=True)
    gradient = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
    out = pipe(
        "a watercolor", image=Image.fromarray(gradient), strength=0.6, num_inference_steps=10,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert out.size == (64, 64)
    assert np.asarray(out).std() > 1.0


# -- tiny-llama on vLLM: the session's Serve deployment (the registry's engine kwargs, as `farm up` serves it) --

PROMPTS = ["Tell me a story about a dragon and a knight.", "A painting of a castle at sunset"]
CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello, how are you?"},
]
MAX_TOKENS = 8


def _llm(serve_apps, endpoint: str, body: dict) -> dict:
    """One request straight to Serve's LLM application, with the token ids vLLM used and made."""
    # ignore_eos: random weights may well sample EOS first; a fixed count is wanted.
    request = {"model": "tiny-llama", "max_tokens": MAX_TOKENS, "temperature": 0, "ignore_eos": True, "return_token_ids": True, **body}
    r = httpx.post(f"{serve_apps.url}/llm/v1/{endpoint}", json=request, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def llama_tokenizer(demo_models):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo_models["tiny-llama"])


# vLLM's own resolution of the registry's engine kwargs for the demo model, without starting an engine
# (the served engine's dtype is not visible over HTTP); its own process, so vLLM is never imported into pytest's.
RESOLVE_DTYPE = """
import json, sys
from vllm.config import ModelConfig
kwargs = json.loads(sys.argv[2])
print("DTYPE", ModelConfig(model=sys.argv[1], dtype=kwargs.get("dtype", "auto"), max_model_len=kwargs["max_model_len"]).dtype)
"""


def test_vllm_loads_the_demo_llm_in_bfloat16(demo_models):
    from serve.demo import DEMO_LLM_ENGINE_KWARGS

    proc = subprocess.run([sys.executable, "-c", RESOLVE_DTYPE, str(demo_models["tiny-llama"]), json.dumps(DEMO_LLM_ENGINE_KWARGS)],
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("DTYPE ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    assert lines[-1] == "DTYPE torch.bfloat16"


def test_vllm_generates_tokens(serve_apps, llama_tokenizer):
    for prompt in PROMPTS:
        (choice,) = _llm(serve_apps, "completions", {"prompt": prompt})["choices"]
        assert choice["prompt_token_ids"][0] == llama_tokenizer.bos_token_id
        assert choice["prompt_token_ids"].count(llama_tokenizer.bos_token_id) == 1
        assert len(choice["token_ids"]) == MAX_TOKENS
        assert choice["text"]


def test_vllm_chat_uses_the_template(serve_apps, llama_tokenizer):
    answer = _llm(serve_apps, "chat/completions", {"messages": CHAT})
    ids = answer["prompt_token_ids"]
    assert ids.count(llama_tokenizer.bos_token_id) == 1 and ids[0] == llama_tokenizer.bos_token_id
    prompt = llama_tokenizer.decode(ids)
    assert prompt.endswith("<|assistant|>\n"), prompt  # the generation prompt of the demo model's template
    assert prompt.count("<|begin_of_text|>") == 1
    assert all(m["content"] in prompt for m in CHAT)
    assert llama_tokenizer.convert_tokens_to_ids("<|assistant|>") in ids
    (choice,) = answer["choices"]
    assert len(choice["token_ids"]) == MAX_TOKENS
