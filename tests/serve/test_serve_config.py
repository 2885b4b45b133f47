"""The Serve config built from the registry, the example file for GPU clusters, and the KubeRay RayService."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.llm import LLMServingArgs
from ray.serve.schema import ServeDeploySchema

from farm.settings import Settings
from serve.config import CLUSTER_OPTIONS, diffusion_route, serve_config, serve_url, slug
from serve.demo import demo_registry
from serve.diffusion.app import DiffusionAppArgs, deployment_options
from serve.registry import ModelRegistry
from serve.vlm.app import VisionAppArgs

REPO = Path(__file__).resolve().parents[2]
MODELS_EXAMPLE = REPO / "serve" / "models.example.yaml"
SERVE_EXAMPLE = REPO / "serve" / "serve_config.example.yaml"
RAYSERVICE = REPO / "cluster" / "kuberay" / "rayservice.yaml"


def _validate(config: dict) -> None:
    ServeDeploySchema.model_validate(config)
    for app in config["applications"]:
        if app["import_path"] == "ray.serve.llm:build_openai_app":
            LLMServingArgs.model_validate(app["args"])
        elif app["import_path"] == "serve.vlm.app:build_app":
            VisionAppArgs.model_validate(app["args"])
        else:
            assert app["import_path"] == "serve.diffusion.app:build_app"
            DiffusionAppArgs.model_validate(app["args"])


def test_demo_config_is_local_and_valid(tmp_path: Path) -> None:
    config = serve_config(demo_registry(tmp_path))
    _validate(config)
    assert config["http_options"] == {"host": "127.0.0.1", "port": 8001}  # loopback: only the front door calls it
    assert serve_url(config) == "http://127.0.0.1:8001"
    llm, sd, vlm = config["applications"]
    assert (llm["name"], llm["route_prefix"]) == ("llm", "/llm")
    (tiny_llama,) = llm["args"]["llm_configs"]
    assert tiny_llama["model_loading_config"] == {"model_id": "tiny-llama", "model_source": str(tmp_path.resolve() / "tiny-llama")}
    assert tiny_llama["accelerator_type"] is None and tiny_llama["placement_group_config"] == {"bundles": [{"CPU": 1.0}]}
    assert tiny_llama["engine_kwargs"]["kv_cache_memory_bytes"] == 256 << 20
    scaling = tiny_llama["deployment_config"]["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"], scaling["target_ongoing_requests"]) == (1, 1, 2)
    assert tiny_llama["deployment_config"]["max_queued_requests"] == 64
    assert (sd["name"], sd["route_prefix"]) == ("diffusion-tiny-sd", "/diffusion/tiny-sd")
    assert (vlm["name"], vlm["route_prefix"]) == ("vlm-tiny-vlm", "/vlm/tiny-vlm")  # transformers on CPU, not vLLM


def test_several_llms_share_one_application(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": [
        {"name": "a", "kind": "llm", "source": "org/a"},
        {"name": "b", "kind": "llm", "source": "org/b", "gpus": 2, "accelerator_type": "L4"},
        {"name": "Img/XL:1", "kind": "diffusion", "source": "org/xl"},
        {"name": "img-2", "kind": "diffusion", "source": "org/2"},
    ]}))
    config = serve_config(ModelRegistry.from_yaml(path))
    _validate(config)
    assert [a["name"] for a in config["applications"]] == ["llm", "diffusion-img-xl-1", "diffusion-img-2"]
    a, b = config["applications"][0]["args"]["llm_configs"]
    assert b["accelerator_type"] == "L4" and b["engine_kwargs"]["tensor_parallel_size"] == 2
    assert "placement_group_config" not in b
    assert diffusion_route("Img/XL:1") == "/diffusion/img-xl-1" and slug("---") == "model"


def test_diffusion_deployment_options_follow_the_registry() -> None:
    spec = ModelRegistry.from_yaml(MODELS_EXAMPLE).get("sd-2.1-base")
    opts = deployment_options(spec)
    assert opts["autoscaling_config"] == {
        "min_replicas": 0, "initial_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2,
        "upscale_delay_s": 30, "downscale_delay_s": 600,
    }
    assert opts["max_ongoing_requests"] == 4 and opts["max_queued_requests"] == 32
    assert opts["backpressure_config"] == {"status_code": 503, "retry_after_s": 1}
    assert opts["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 1, "accelerator_type": "A10G"}


def test_example_serve_config_is_generated_from_the_example_registry() -> None:
    expected = serve_config(ModelRegistry.from_yaml(MODELS_EXAMPLE), **CLUSTER_OPTIONS)
    checked_in = yaml.safe_load(SERVE_EXAMPLE.read_text())
    assert checked_in == expected, "regenerate: FARM_MODELS__REGISTRY_FILE=serve/models.example.yaml farm models serve-config --cluster"
    _validate(checked_in)
    gpu_apps = [a for a in checked_in["applications"]]
    assert checked_in["http_options"]["host"] == "0.0.0.0" and checked_in["proxy_location"] == "EveryNode"
    llm, vlm = gpu_apps[0]["args"]["llm_configs"]  # a VLM on the vllm runtime is one more model of Ray Serve LLM
    assert llm["model_loading_config"]["model_source"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert vlm["model_loading_config"]["model_source"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert llm["accelerator_type"] == "L4"
    assert gpu_apps[1]["args"]["model"]["gpus"] == 1


def test_farm_models_serve_config_prints_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from farm.cli.main import app
    from farm.settings import get_settings

    monkeypatch.setenv("FARM_MODELS__REGISTRY_FILE", str(MODELS_EXAMPLE))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["models", "serve-config", "--cluster"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output) == yaml.safe_load(SERVE_EXAMPLE.read_text())


def test_rayservice_manifest() -> None:
    docs = list(yaml.safe_load_all(RAYSERVICE.read_text()))
    service, policy = docs
    assert (service["apiVersion"], service["kind"]) == ("ray.io/v1", "RayService")
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == yaml.safe_load(SERVE_EXAMPLE.read_text())
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == "2.60.0" and cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"gpu-l4", "gpu-a10g"}
    for group in groups.values():
        assert 0 == group["minReplicas"] < group["maxReplicas"]
        (container,) = group["template"]["spec"]["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # Every Ray process runs with token auth from the Secret.
    containers = [cluster["headGroupSpec"]["template"]["spec"]["containers"][0], *(
        g["template"]["spec"]["containers"][0] for g in groups.values())]
    for container in containers:
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "ray-auth-token"
    # The accelerator types the Serve config asks for have a worker group each.
    wanted = {a["args"]["llm_configs"][0]["accelerator_type"] if a["name"] == "llm" else a["args"]["model"]["accelerator_type"]
              for a in yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]}
    offered = {g["template"]["spec"]["nodeSelector"]["nvidia.com/gpu.product"].removeprefix("NVIDIA-") for g in groups.values()}
    assert wanted == offered
    # Serve's port is reachable only from the front door (and Ray itself).
    assert policy["kind"] == "NetworkPolicy"
    front_door_rule = policy["spec"]["ingress"][0]
    assert front_door_rule["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "storycore-farm-api"}
    assert front_door_rule["ports"] == [{"protocol": "TCP", "port": 8000}]


def test_serve_settings_travel_to_ray_jobs() -> None:
    from farm.runner_env import settings_env

    env = settings_env(Settings(serve={"url": "http://10.0.0.5:8000", "rate_limit_rps": 3}))
    assert env["FARM_SERVE__URL"] == "http://10.0.0.5:8000"
    assert env["FARM_SERVE__RATE_LIMIT_RPS"] == "3.0"
