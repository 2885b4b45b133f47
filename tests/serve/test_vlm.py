"""Vision-language models: the transformers engine on the tiny VLM, OpenAI messages with images, and the vLLM (GPU) configs.

The engine runs for real on CPU. The vLLM path cannot run here (vLLM's
multimodal models import torchvision, which cannot load beside CPU torch),
so it is checked up to that boundary: the Serve LLM config and the
``ray.data.llm`` processor config built from the same registry entry, and
the rows the caption stage hands that processor.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serve.config import serve_config, vlm_route
from serve.demo import demo_registry
from serve.demo_models import VLM_IMAGE_TOKENS
from serve.diffusion.protocol import InvalidRequest
from serve.registry import ModelRegistry, ModelSpec
from serve.vlm.engine import TransformersVisionEngine
from serve.vlm.protocol import VisionJob, VisionLimits, parse_messages

QWEN = ModelSpec(name="qwen2.5-vl-7b", kind="vlm", source="Qwen/Qwen2.5-VL-7B-Instruct", gpus=1, accelerator_type="L4",
                 engine_kwargs={"max_model_len": 8192, "limit_mm_per_prompt": {"image": 4}, "allowed_media_domains": ["media.example.com"]})


@pytest.fixture(scope="module")
def engine(demo_models: dict[str, Path]) -> TransformersVisionEngine:
    e = TransformersVisionEngine(str(demo_models["tiny-vlm"]), max_batch_size=8)
    e.load()
    return e


def frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (72, 128, 3), dtype=np.uint8)


def ask(images: int, text: str = "Describe the shot.", max_tokens: int = 6) -> VisionJob:
    content = [*({"type": "image"} for _ in range(images)), {"type": "text", "text": text}]
    return VisionJob([{"role": "user", "content": content}], tuple(frame(i) for i in range(images)), max_tokens=max_tokens)


def test_engine_batches_jobs_and_counts_image_tokens(engine: TransformersVisionEngine) -> None:
    jobs = [ask(0), ask(1), ask(2), ask(1, max_tokens=3)]
    results = engine.generate_sync(jobs)
    assert [r.image_tokens for r in results] == [0, VLM_IMAGE_TOKENS, 2 * VLM_IMAGE_TOKENS, VLM_IMAGE_TOKENS]
    # The same text costs exactly the images' tokens more with images in front of it.
    assert [r.prompt_tokens - results[0].prompt_tokens for r in results] == [0, VLM_IMAGE_TOKENS, 2 * VLM_IMAGE_TOKENS, VLM_IMAGE_TOKENS]
    assert all(r.batch_size == 4 for r in results)  # one generate for all four
    assert all(1 <= r.completion_tokens <= j.max_tokens for r, j in zip(results, jobs))
    alone = engine.generate_sync([jobs[2]])[0]
    assert alone.batch_size == 1 and alone.prompt_tokens == results[2].prompt_tokens
    with pytest.raises(ValueError, match="2 image parts but 1 images"):
        VisionJob(ask(2).messages, (frame(0),))


def test_openai_messages_become_engine_jobs() -> None:
    buf = io.BytesIO()
    Image.fromarray(frame(1)).save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Here:"}, {"type": "image_url", "image_url": {"url": url}}]}]
    parsed, images = parse_messages(messages, VisionLimits())
    assert parsed[1]["content"] == [{"type": "text", "text": "Here:"}, {"type": "image"}]
    assert len(images) == 1 and images[0].size == (128, 72) and np.array_equal(np.asarray(images[0]), frame(1))

    def refused(messages: list, **limits) -> InvalidRequest:
        with pytest.raises(InvalidRequest) as caught:
            parse_messages(messages, VisionLimits(**limits))
        return caught.value

    too_big = refused(messages, max_image_bytes=100)
    assert too_big.param == "messages.1.content.1.image_url.url" and "larger than 100 bytes" in str(too_big)
    remote = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://127.0.0.1:1/x.png"}}]}]
    assert "not an allowed media domain" in str(refused(remote))
    assert refused([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA=="}}]}]).param == "messages.0.content.0.type"
    assert "not a readable" in str(refused([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]))


def test_registry_places_each_vlm_by_runtime(tmp_path: Path) -> None:
    demo = serve_config(demo_registry(tmp_path))
    apps = {a["name"]: a for a in demo["applications"]}
    assert apps["vlm-tiny-vlm"]["route_prefix"] == vlm_route("tiny-vlm") == "/vlm/tiny-vlm"
    assert apps["vlm-tiny-vlm"]["import_path"] == "serve.vlm.app:build_app"
    assert [c["model_loading_config"]["model_id"] for c in apps["llm"]["args"]["llm_configs"]] == ["tiny-llama"]

    from serve.vlm.app import VisionAppArgs

    assert VisionAppArgs.model_validate(apps["vlm-tiny-vlm"]["args"]).model.runtime == "transformers"
    gpu = serve_config(ModelRegistry.from_specs([ModelSpec(name="llama", kind="llm", source="org/llama"), QWEN]))
    (llm_app,) = gpu["applications"]  # on the vllm runtime a VLM is one more model of Ray Serve LLM's application
    qwen = llm_app["args"]["llm_configs"][1]
    assert qwen["model_loading_config"] == {"model_id": "qwen2.5-vl-7b", "model_source": "Qwen/Qwen2.5-VL-7B-Instruct"}
    assert qwen["engine_kwargs"]["allowed_media_domains"] == ["media.example.com"] and qwen["accelerator_type"] == "L4"
    with pytest.raises(ValueError, match="transformers' is for vlm"):
        ModelSpec(name="x", kind="llm", source="org/x", runtime="transformers")


def test_gpu_caption_path_builds_the_multimodal_processor_config() -> None:
    from pipelines.stages.caption.sample import CaptionTask
    from pipelines.stages.models.vlm import VisionLLMStage, VisionStage
    from pipelines.stages.payloads import Shot, Source, Video
    from fractions import Fraction

    stage = VisionLLMStage(QWEN, batch_size=16)
    config = stage.config()
    assert config.model_source == "Qwen/Qwen2.5-VL-7B-Instruct" and config.accelerator_type == "L4"
    assert config.engine_kwargs["limit_mm_per_prompt"] == {"image": 4} and config.batch_size == 16
    assert dict(config.prepare_multimodal_stage) == {"enabled": True, "chat_template_content_format": "openai"}
    assert config.chat_template_stage is True and config.should_continue_on_error is True
    with pytest.raises(ValueError, match="runs on vllm, not transformers"):
        VisionStage(QWEN)

    video = Video(Source(0, "a.mp4"), 48, 24.0, Fraction(24), False, 128, 72, 2.0, "h264", "yuv420p", 0, False, None, Fraction(1, 24))
    task = CaptionTask(video, Shot(1, 0, 48, 0.0, 2.0, (24,)), 1, (12, 36), np.stack([frame(0), frame(1)]), "What happens?", 20)
    import pickle

    row = VisionLLMStage.preprocess({"item": pickle.dumps(task)})
    (message,) = row["messages"]
    assert [p["type"] for p in message["content"]] == ["image_url", "image_url", "text"]
    jpeg = base64.b64decode(message["content"][0]["image_url"]["url"].removeprefix("data:image/jpeg;base64,"))
    assert Image.open(io.BytesIO(jpeg)).size == (128, 72)
    assert row["sampling_params"] == {"max_tokens": 20, "temperature": 0.0}
    back = pickle.loads(VisionLLMStage.postprocess({**row, "generated_text": "A red car.", "num_input_tokens": 500, "num_generated_tokens": 4})["item"])
    assert back.caption.text == "A red car." and back.caption.prompt_tokens == 500 and back.caption.shot.index == 1
