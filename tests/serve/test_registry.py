"""The model registry: the demo entries, YAML files, validation, what settings point at."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from farm.settings import Settings
from serve.demo import DEMO_LLM_ENGINE_KWARGS, demo_registry, load_registry
from serve.registry import ModelRegistry, ModelSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "serve" / "models.example.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    return path


def test_default_points_at_the_demo_models(tmp_path):
    registry = demo_registry(tmp_path)
    assert registry.names() == ["tiny-llama", "tiny-sd", "tiny-vlm"]
    llm, sd = registry.get("tiny-llama"), registry.get("tiny-sd")
    assert (llm.kind, sd.kind) == ("llm", "diffusion")
    assert Path(llm.source) == tmp_path.resolve() / "tiny-llama"
    assert Path(sd.source) == tmp_path.resolve() / "tiny-sd"
    assert llm.engine_kwargs == DEMO_LLM_ENGINE_KWARGS
    assert llm.gpus == 0 and llm.accelerator_type is None
    assert (llm.min_replicas, llm.max_replicas, llm.target_ongoing_requests, llm.max_ongoing_requests) == (1, 1, 2, 8)
    assert [s.name for s in registry.of_kind("llm")] == ["tiny-llama"]
    assert [s.name for s in registry.of_kind("diffusion")] == ["tiny-sd"]
    vlm = registry.get("tiny-vlm")
    assert (vlm.kind, vlm.runtime, vlm.on_vllm) == ("vlm", "transformers", False) and llm.on_vllm  # vLLM's VLMs need torchvision
    assert "tiny-sd" in registry and "gpt-4" not in registry


def test_default_sources_are_what_build_demo_models_returns(tmp_path, demo_models):
    registry = demo_registry(demo_models["tiny-llama"].parent)
    assert {name: Path(registry.get(name).source) for name in registry.names()} == demo_models


def test_unknown_name_lists_known_models(tmp_path):
    with pytest.raises(KeyError, match=r"unknown model 'gpt-4'; known models: tiny-llama, tiny-sd, tiny-vlm"):
        demo_registry(tmp_path).get("gpt-4")


def test_example_yaml_is_a_gpu_registry():
    registry = ModelRegistry.from_yaml(EXAMPLE)
    (llm,) = registry.of_kind("llm")
    (sd,) = registry.of_kind("diffusion")
    assert llm.source == "meta-llama/Llama-3.1-8B-Instruct"
    assert llm.gpus == 1 and llm.accelerator_type in {"A10G", "L4"}
    assert llm.max_replicas > llm.min_replicas
    assert llm.engine_kwargs["max_model_len"] == 8192
    assert sd.source == "stabilityai/stable-diffusion-2-1-base" and sd.gpus == 1


def test_yaml_defaults_and_relative_paths(tmp_path):
    path = write(
        tmp_path,
        """
models:
  - {name: local-llm, kind: llm, source: ./weights/llm}
  - {name: hub-sd, kind: diffusion, source: org/some-model, gpus: 0.5, accelerator_type: L4}
""",
    )
    registry = ModelRegistry.from_yaml(path)
    local = registry.get("local-llm")
    assert local.source == str(tmp_path.resolve() / "weights" / "llm")
    assert local.engine_kwargs == {} and local.gpus == 0 and local.max_ongoing_requests == 8
    hub = registry.get("hub-sd")
    assert hub.source == "org/some-model"  # hub ids are left alone
    assert hub.gpus == 0.5 and hub.accelerator_type == "L4"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models:\n  - {name: a, kind: audio, source: x}\n", r"models\.0\.kind\n  Input should be 'llm', 'diffusion' or 'vlm'"),
        ("models:\n  - {name: a, kind: llm}\n", r"models\.0\.source\n  Field required"),
        ("models:\n  - {name: a, kind: llm, source: x, gpu: 1}\n", r"models\.0\.gpu\n  Extra inputs are not permitted"),
        ("models:\n  - {name: a, kind: llm, source: x, gpus: -1}\n", r"models\.0\.gpus\n  Input should be greater than or equal to 0"),
        ("models:\n  - {name: a, kind: llm, source: x, min_replicas: 3, max_replicas: 2}\n", r"max_replicas \(2\) is below min_replicas \(3\)"),
        ("models:\n  - {name: a, kind: llm, source: x}\n  - {name: a, kind: diffusion, source: y}\n", r"duplicate model names: a"),
        ("models: []\n", r"models\n  List should have at least 1 item"),
        ("- {name: a, kind: llm, source: x}\n", r"Input should be a valid dictionary"),
        ("", r"Input should be a valid dictionary"),
    ],
    ids=["bad-kind", "no-source", "typo-field", "negative-gpus", "replicas", "duplicates", "empty", "list", "blank"],
)
def test_bad_yaml_is_rejected_with_a_clear_error(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ValidationError, match=expected) as caught:
        ModelRegistry.from_yaml(path)
    assert f"for model registry {path}" in str(caught.value)


def test_registry_keys_must_match_names():
    spec = ModelSpec(name="a", kind="llm", source="x")
    with pytest.raises(ValidationError, match="registry key 'b' differs from its model's name 'a'"):
        ModelRegistry(models={"b": spec})


def test_settings_without_a_file_load_the_demo_models(tmp_path):
    settings = Settings(models={"cache_dir": tmp_path / "cache"})
    registry = load_registry(settings.models.registry_file, settings.models.cache_dir)
    assert registry == demo_registry(tmp_path / "cache")


def test_settings_with_a_file_load_it(tmp_path):
    settings = Settings(models={"cache_dir": tmp_path, "registry_file": EXAMPLE})
    assert load_registry(settings.models.registry_file, settings.models.cache_dir) == ModelRegistry.from_yaml(EXAMPLE)


def test_settings_with_a_missing_file_fail_loudly(tmp_path):
    settings = Settings(models={"cache_dir": tmp_path, "registry_file": tmp_path / "nope.yaml"})
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_registry(settings.models.registry_file, settings.models.cache_dir)


def test_the_registry_knows_no_particular_model():
    """The demo entries import the registry, never the other way round."""
    import serve.registry

    tree = ast.parse(Path(serve.registry.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.startswith(("serve.demo", "farm"))}


def test_pick_finds_a_model_by_kind_and_name_or_says_what_there_is() -> None:
    a, b = ModelSpec(name="a", kind="llm", source="x"), ModelSpec(name="b", kind="diffusion", source="y")
    registry = ModelRegistry(models={"a": a, "b": b})
    assert registry.pick("llm").name == "a" and registry.pick("diffusion", "b").name == "b"
    with pytest.raises(KeyError, match="unknown diffusion model 'a'; this farm's diffusion models: b"):
        registry.pick("diffusion", "a")
    with pytest.raises(KeyError, match="has no vlm model"):
        registry.pick("vlm")
