"""Tiny random-weight demo models, built in code.

The farm must run end to end on a laptop with no network: ``tiny-llama`` is a
Llama-architecture causal LM that vLLM loads on CPU, ``tiny-sd`` a Stable
Diffusion pipeline that diffusers runs in about a second, ``tiny-vlm`` a
LLaVA-style vision-language model (CLIP vision tower, Llama text model) that
transformers runs on CPU (vLLM's multimodal models need torchvision, which
the CPU build cannot have beside it). All are random
weights with real tokenizers, so every code path (chat templates, token
counts, image sizes, img2img) behaves like the real thing; the outputs are
noise.

Builds are deterministic (fixed seeds), idempotent (a ``.complete`` marker
holding :data:`RECIPE_VERSION`), atomic (built in a temporary folder, then
renamed into place, so an interrupted build never looks complete) and safe
to race (a per-model lock file).

Heavy libraries are imported inside the builders, so importing this module
is cheap.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

TINY_LLAMA = "tiny-llama"
TINY_SD = "tiny-sd"
TINY_VLM = "tiny-vlm"

#: Bump when a recipe changes; older builds are then rebuilt.
RECIPE_VERSION = "1"
MARKER = ".complete"
_TMP_INFIX = ".tmp-"
SEED = 0

LLM_MAX_MODEL_LEN = 1024

# A small English text for training the byte-level BPE tokenizers, so that
# ordinary prompts split into word-like pieces rather than single bytes.
CORPUS = """\
Once upon a time there was a small studio at the edge of a quiet town. Every
morning the artists came in, made coffee, and sat down to draw. They drew
people and animals, houses and trees, the sea, the sky, the sun and the moon.
The story they were telling was about a girl who wanted to fly. She built
wings from paper and wood, and she climbed the highest hill to try them.
The first time she fell, and the second time she fell again, but the third
time the wind took her and she flew over the river, the fields and the city.

A shot is a piece of film between two cuts. A scene is made of many shots.
The camera can move slowly or quickly; it can pan to the left or to the
right, zoom in on a face, or pull back to show the whole landscape. Light
and colour set the mood: warm yellow light in the evening, cold blue light
at night, soft grey light on a rainy day. Write a short description of each
shot, then render a keyframe for it, and put the frames together in order.

What is the weather like today? It is sunny with a few clouds, and it will
rain later in the afternoon. Please answer the question in one sentence.
Tell me a story about a dragon and a knight. The dragon was not angry; it
was only lonely, and the knight became its friend. Summarize the text below.
Translate this sentence into French. Give me three ideas for a birthday
party. Explain how a computer works to a child. Hello, how are you? I am
fine, thank you. Can you help me with my homework? Yes, of course I can.

The quick brown fox jumps over the lazy dog. A painting of a castle on a
mountain at sunset, highly detailed, digital art. A photo of a cat sitting
on a red chair. A watercolor of a boat on a lake in the morning fog. An old
man walking with his dog through a forest in autumn, cinematic lighting.
A futuristic city at night with neon signs and flying cars. A bowl of fruit
on a wooden table, still life, oil on canvas. Portrait of a young woman with
long hair, studio light, sharp focus, high resolution.

The user asks a question and the assistant gives a helpful answer. The system
message tells the assistant how to behave. Numbers like 1, 2, 3, 10, 42, 100
and 2024 appear in text, and so do words such as first, second, last, next,
before, after, because, however, therefore, and, or, not, with, without.
"""

# --------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------


def build_demo_models(cache_dir: Path, *, force: bool = False) -> dict[str, Path]:
    """Build (or find already built) the demo models under ``cache_dir``.

    Returns ``{"tiny-llama": path, "tiny-sd": path, "tiny-vlm": path}`` with absolute paths.
    A completed build is reused unless ``force`` is set.
    """
    cache_dir = Path(cache_dir).expanduser().resolve()
    builders: dict[str, Callable[[Path], None]] = {
        TINY_LLAMA: build_tiny_llama,
        TINY_SD: build_tiny_sd,
        TINY_VLM: build_tiny_vlm,
    }
    return {name: _build_once(cache_dir, name, fn, force=force) for name, fn in builders.items()}


def is_complete(path: Path) -> bool:
    """Whether ``path`` holds a finished build of the current recipe."""
    marker = Path(path) / MARKER
    try:
        return json.loads(marker.read_text()).get("recipe") == RECIPE_VERSION
    except (OSError, ValueError, AttributeError):
        return False


# --------------------------------------------------------------------------
# Atomic, idempotent, locked builds
# --------------------------------------------------------------------------


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build_once(cache_dir: Path, name: str, build: Callable[[Path], None], *, force: bool) -> Path:
    target = cache_dir / name
    if not force and is_complete(target):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / f".{name}.lock"):
        if not force and is_complete(target):  # someone else finished meanwhile
            return target
        # Holding the lock, any temporary folder left is from a dead builder.
        for stale in cache_dir.glob(f".{name}{_TMP_INFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}{_TMP_INFIX}", dir=cache_dir))
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide the model from other users (Ray workers)
        try:
            build(tmp)
            (tmp / MARKER).write_text(json.dumps({"recipe": RECIPE_VERSION, "name": name}) + "\n")
            if target.exists():  # incomplete, outdated or forced: move aside first
                old = Path(tempfile.mkdtemp(prefix=f".{name}{_TMP_INFIX}old-", dir=cache_dir))
                os.replace(target, old / name)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


# --------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------
#
# Both tokenizers are byte-level BPEs whose merges are learnt from CORPUS by
# _learn_bpe below rather than by tokenizers' trainer, whose tie-breaking
# follows hash-map order and so differs from run to run.


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character table, in GPT-2/CLIP vocabulary order."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = list(bs)
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + len(cs) - 188)  # 188 printable bytes come first
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


def _learn_bpe(words: Counter[tuple[str, ...]], max_merges: int) -> list[tuple[str, str]]:
    """Greedy BPE: merge the most frequent adjacent pair (ties: the smallest pair)
    until ``max_merges`` or every word is one symbol. Deterministic by construction."""
    merges: list[tuple[str, str]] = []
    words = Counter(words)
    while len(merges) < max_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        merged: Counter[tuple[str, ...]] = Counter()
        for word, count in words.items():
            merged[_apply_merge(word, best)] += count
        words = merged
    return merges


def _apply_merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def _corpus_words(tok, *, end_of_word: str = "") -> Counter[tuple[str, ...]]:
    """CORPUS split by ``tok``'s own normalizer and pre-tokenizer, as symbol tuples."""
    words: Counter[tuple[str, ...]] = Counter()
    for line in CORPUS.splitlines():
        text = tok.normalizer.normalize_str(line) if tok.normalizer else line
        for piece, _ in tok.pre_tokenizer.pre_tokenize_str(text):
            symbols = list(piece)
            symbols[-1] += end_of_word
            words[tuple(symbols)] += 1
    return words


def _vocab(base: list[str], merges: list[tuple[str, str]], limit: int) -> tuple[list[str], list[tuple[str, str]]]:
    """``base`` then each merge's result, stopping at ``limit`` tokens."""
    tokens, seen, kept = list(base), set(base), []
    for a, b in merges:
        if a + b not in seen:
            if len(tokens) >= limit:
                break
            seen.add(a + b)
            tokens.append(a + b)
        kept.append((a, b))
    return tokens, kept


LLAMA_SPECIAL = {
    "bos": "<|begin_of_text|>",
    "eos": "<|end_of_text|>",
    "pad": "<|pad|>",
}
LLAMA_ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
LLAMA_VOCAB_LIMIT = 1024

# Each turn is "<|role|>\n{content}<eos>\n"; the model is cued with "<|assistant|>\n".
LLAMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] | trim + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def build_llama_tokenizer(extra_specials: tuple[str, ...] = (), chat_template: str = LLAMA_CHAT_TEMPLATE):
    """A ``PreTrainedTokenizerFast``: byte-level BPE, BOS prepended, chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = [*LLAMA_SPECIAL.values(), *LLAMA_ROLE_TOKENS, *extra_specials]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    merges = _learn_bpe(_corpus_words(tok), LLAMA_VOCAB_LIMIT)
    tokens, merges = _vocab(list(_bytes_to_unicode().values()), merges, LLAMA_VOCAB_LIMIT - len(specials))
    tok.model = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges)
    tok.add_special_tokens(specials)
    bos = LLAMA_SPECIAL["bos"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=LLAMA_SPECIAL["eos"],
        pad_token=LLAMA_SPECIAL["pad"],
        additional_special_tokens=[*LLAMA_ROLE_TOKENS, *extra_specials],
        chat_template=chat_template,
        model_max_length=LLM_MAX_MODEL_LEN,
        clean_up_tokenization_spaces=False,
    )


CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"
CLIP_VOCAB_LIMIT = 1000


def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's layout: 256 bytes, 256 bytes + "</w>", merges, then BOS and EOS last."""
    from transformers import CLIPTokenizer

    # Learn on the exact normalizer/pre-tokenizer CLIPTokenizer uses at run time.
    runtime = CLIPTokenizer(vocab={CLIP_BOS: 0, CLIP_EOS: 1}, merges=[]).backend_tokenizer
    merges = _learn_bpe(_corpus_words(runtime, end_of_word="</w>"), CLIP_VOCAB_LIMIT)
    byte_chars = list(_bytes_to_unicode().values())
    base = [*byte_chars, *(c + "</w>" for c in byte_chars)]
    tokens, merges = _vocab(base, merges, CLIP_VOCAB_LIMIT - 2)
    return {t: i for i, t in enumerate([*tokens, CLIP_BOS, CLIP_EOS])}, merges


def write_clip_vocab_files(path: Path, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
    """The slow-tokenizer files (vocab.json, merges.txt) older loaders look for."""
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (path / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


def build_tiny_llama(path: Path) -> None:
    """A 2-layer Llama (hidden 128, 2 heads of 64) with its tokenizer, in ``path``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_llama_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,  # vLLM's CPU attention kernels reject small head sizes such as 16
        max_position_embeddings=LLM_MAX_MODEL_LEN,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="bfloat16",
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    # transformers 5 writes the template to chat_template.jinja; older readers
    # (transformers 4, other runtimes) look in tokenizer_config.json.
    config_file = path / "tokenizer_config.json"
    tok_config = json.loads(config_file.read_text())
    tok_config.update(tokenizer_class="PreTrainedTokenizerFast", chat_template=LLAMA_CHAT_TEMPLATE)
    config_file.write_text(json.dumps(tok_config, indent=2, ensure_ascii=False) + "\n")


def build_tiny_sd(path: Path) -> None:
    """A Stable Diffusion pipeline of tiny components (64×64 images), in ``path``."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    torch.manual_seed(SEED)
    # Four VAE blocks give the real 8x down-sampling, so 8x8 latents make 64x64 images.
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    torch.manual_seed(SEED)
    vae = AutoencoderKL(
        sample_size=64,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
    )
    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            projection_dim=32,
            layer_norm_eps=1e-5,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    tokenizer_dir = path / "tokenizer"
    if not (tokenizer_dir / "vocab.json").exists():
        write_clip_vocab_files(tokenizer_dir, vocab, merges)


# -- tiny-vlm ----------------------------------------------------------------

VLM_IMAGE_TOKEN = "<image>"
VLM_IMAGE_SIDE = 56  # CLIP input side: 4x4 patches of 14
VLM_PATCH = 14
#: Tokens one image becomes in the prompt: its 16 patches and the CLS token ("full" feature selection).
VLM_IMAGE_TOKENS = (VLM_IMAGE_SIDE // VLM_PATCH) ** 2 + 1

# Like the Llama template, with OpenAI-style content lists: text parts as text, image parts as <image>.
VLM_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] | trim }}{% else %}{{ '<image>' }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def build_tiny_vlm(path: Path) -> None:
    """A LLaVA-style model: 2-layer CLIP vision tower at 56x56, 2-layer Llama (hidden 128), processor, in ``path``.

    The image processor is CLIP's PIL implementation (the default one needs
    torchvision); ``processor_config.json`` names the plain class, which
    transformers resolves to the PIL one where torchvision is missing.
    """
    import torch
    from transformers import CLIPVisionConfig, GenerationConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip import CLIPImageProcessorPil

    tokenizer = build_llama_tokenizer((VLM_IMAGE_TOKEN,), VLM_CHAT_TEMPLATE)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": VLM_IMAGE_SIDE}, crop_size={"height": VLM_IMAGE_SIDE, "width": VLM_IMAGE_SIDE}
    )
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=VLM_PATCH, vision_feature_select_strategy="full",
        chat_template=VLM_CHAT_TEMPLATE, image_token=VLM_IMAGE_TOKEN, num_additional_image_tokens=1,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
            image_size=VLM_IMAGE_SIDE, patch_size=VLM_PATCH, projection_dim=64,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2, head_dim=64, max_position_embeddings=LLM_MAX_MODEL_LEN,
            rms_norm_eps=1e-5, rope_theta=10000.0, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ),
        image_token_index=tokenizer.convert_tokens_to_ids(VLM_IMAGE_TOKEN),
        image_seq_length=VLM_IMAGE_TOKENS,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    torch.manual_seed(SEED)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
