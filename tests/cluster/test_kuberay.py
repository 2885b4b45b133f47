"""The Kubernetes manifests (cluster/kuberay/), validated offline.

Every KubeRay object against its CRD schema (tests/cluster/crds/, or ../shared/schemas/kuberay/ beside the checkout), strictly; every
core object with kubernetes-validate; the autoscaler's reading of the worker groups through
Ray's own KubeRay code; and the places where a manifest could drift from the code: setting
names, the model registry, service names, labels, kustomize's image rule.
"""

from __future__ import annotations

import copy
import os
import tomllib
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr
from ray.autoscaler._private.node_provider_availability_tracker import NodeAvailabilitySummary
from ray.autoscaler._private.resource_demand_scheduler import _default_utilization_scorer, get_nodes_for

from serve.registry import ModelRegistry
from tests.cluster.validation import (
    IMAGE_CPU,
    IMAGE_CUDA,
    KUBERAY,
    REPO,
    containers,
    core_errors,
    crd_errors,
    crd_schemas,
    documents,
    farm_env_names,
    forbid_network,
    is_kuberay,
    manifest_files,
    objects,
    pod_env,
    secret_env_names,
    set_images,
    strict,
)

OBJECTS = list(objects())
KUBERAY_OBJECTS = [(p, o) for p, o in OBJECTS if is_kuberay(o)]
CORE_OBJECTS = [(p, o) for p, o in OBJECTS if not is_kuberay(o)]


def ids(items: list[tuple[Any, dict[str, Any]]]) -> list[str]:
    return [f"{p.name}:{o['kind']}/{o['metadata']['name']}" for p, o in items]


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [o for _, o in OBJECTS if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    return found


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_network(monkeypatch)


# -- schemas ----------------------------------------------------------------------------------

def test_the_manifests_hold_what_the_farm_needs() -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for _, o in OBJECTS)
    assert kinds == [
        ("ConfigMap", "storycore-farm-config"), ("ConfigMap", "storycore-farm-models"),
        ("Deployment", "storycore-farm-api"),
        ("NetworkPolicy", "storycore-batch-internal"), ("NetworkPolicy", "storycore-generation-internal"),
        ("RayCluster", "storycore-batch"), ("RayService", "storycore-generation"),
        ("Secret", "storycore-farm"), ("Service", "storycore-farm-api"),
    ]


@pytest.mark.parametrize(("path", "obj"), KUBERAY_OBJECTS, ids=ids(KUBERAY_OBJECTS))
def test_kuberay_object_passes_its_crd_schema_strictly(path: Any, obj: dict[str, Any]) -> None:
    assert crd_errors(obj) == []


@pytest.mark.parametrize(("path", "obj"), CORE_OBJECTS, ids=ids(CORE_OBJECTS))
def test_core_object_passes_kubernetes_validate(path: Any, obj: dict[str, Any]) -> None:
    assert core_errors(obj) == []


def test_strict_crd_schema_catches_a_misspelt_field() -> None:
    cluster = one("RayCluster")
    for where, misspell in [
        ("spec", lambda s: s.update(enableInTreeAutoScaling=True)),
        ("autoscalerOptions", lambda s: s["autoscalerOptions"].update(idleTimeoutSecond=60)),
        ("worker group", lambda s: s["workerGroupSpecs"][0].update(maxReplica=3)),
        ("container", lambda s: s["headGroupSpec"]["template"]["spec"]["containers"][0].update(envfrom=[])),
    ]:
        bad = copy.deepcopy(cluster)
        misspell(bad["spec"])
        assert crd_errors(bad), f"a misspelt field in the {where} passed"
        # The CRD as published leaves those objects open: the same mistake passes silently.
        assert crd_errors(bad, closed=False) == [], where
    service = copy.deepcopy(one("RayService"))
    service["spec"]["serveConfigv2"] = service["spec"].pop("serveConfigV2")
    assert any("serveConfigv2" in e for e in crd_errors(service))
    service = copy.deepcopy(one("RayService"))
    service["metadata"]["lables"] = {}
    assert any("lables" in e for e in crd_errors(service))  # metadata is checked as ObjectMeta
    wrong_type = copy.deepcopy(cluster)
    wrong_type["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "8"
    assert crd_errors(wrong_type, closed=False)


def test_strict_closes_only_what_the_crd_leaves_unsaid() -> None:
    closed = strict({"type": "object", "properties": {
        "a": {"type": "object", "properties": {"b": {"type": "string"}}},
        "keep": {"type": "object", "properties": {"x": {}}, "x-kubernetes-preserve-unknown-fields": True},
        "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"y": {}}}},
        "list": {"type": "array", "items": {"type": "object", "properties": {"z": {}}}},
        "free": {"type": "object"},
    }})
    assert closed["additionalProperties"] is False
    props = closed["properties"]
    assert props["a"]["additionalProperties"] is False
    assert "additionalProperties" not in props["keep"]
    assert props["map"]["additionalProperties"]["additionalProperties"] is False
    assert props["list"]["items"]["additionalProperties"] is False
    assert "additionalProperties" not in props["free"]


def test_every_crd_version_is_loaded() -> None:
    assert {("ray.io/v1", "RayCluster"), ("ray.io/v1", "RayJob"), ("ray.io/v1", "RayService")} <= set(crd_schemas())


def test_kubernetes_validate_catches_a_misspelt_field() -> None:
    deployment = copy.deepcopy(one("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert core_errors(deployment)
    policy = copy.deepcopy(one("NetworkPolicy", "storycore-batch-internal"))
    policy["spec"]["ingress"][0]["form"] = policy["spec"]["ingress"][0].pop("from")
    assert core_errors(policy)


def test_volume_mounts_name_declared_volumes() -> None:
    def pod_specs(obj: Any) -> list[dict[str, Any]]:
        if isinstance(obj, dict):
            here = [obj] if "containers" in obj else []
            return here + [s for v in obj.values() for s in pod_specs(v)]
        return [s for v in obj for s in pod_specs(v)] if isinstance(obj, list) else []

    for _, obj in OBJECTS:
        for spec in pod_specs(obj):
            volumes = {v["name"] for v in spec.get("volumes", [])}
            for container in spec["containers"] + spec.get("initContainers", []):
                assert {m["name"] for m in container.get("volumeMounts", [])} <= volumes, obj["metadata"]["name"]


# -- the image as a value -------------------------------------------------------------------

def test_kustomization_applies_everything_but_the_secret_and_sets_the_image() -> None:
    kustomization = yaml.safe_load((KUBERAY / "kustomization.yaml").read_text())
    expected = {p.name for p in manifest_files()} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kustomization["resources"]) == expected
    assert kustomization["images"] == [{"name": "storycore-farm", "newName": "storycore-farm"}]
    applied = [o for p, o in OBJECTS if p.name in expected]
    images = {c["image"] for o in applied for c in containers(o)}
    assert images == {IMAGE_CPU, IMAGE_CUDA}  # the names docker/Dockerfile.{cpu,cuda} say to build
    overlay = [{"name": "storycore-farm", "newName": "registry.example/team/storycore-farm"}]
    for obj in applied:
        for container in containers(set_images(obj, overlay)):
            assert container["image"] in {f"registry.example/team/{IMAGE_CPU}", f"registry.example/team/{IMAGE_CUDA}"}
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert IMAGE_CPU == f"storycore-farm:{version}-cpu" and IMAGE_CUDA == f"storycore-farm:{version}-cuda"


def test_control_plane_runs_the_cpu_image_and_ray_the_cuda_image() -> None:
    assert {c["image"] for c in containers(one("Deployment"))} == {IMAGE_CPU}
    for kind in ("RayCluster", "RayService"):
        assert {c["image"] for c in containers(one(kind))} == {IMAGE_CUDA}


# -- autoscaling, as Ray's KubeRay autoscaler reads the groups --------------------------------

def autoscaling_config(kind: str) -> dict[str, Any]:
    obj = copy.deepcopy(one(kind))
    spec = obj["spec"] if kind == "RayCluster" else obj["spec"]["rayClusterConfig"]
    return _derive_autoscaling_config_from_ray_cr({"metadata": {**obj["metadata"], "namespace": "farm"}, "spec": spec})


def placed(config: dict[str, Any], demand: dict[str, float]) -> dict[str, int]:
    scorer = lambda *a, **k: _default_utilization_scorer(*a, **k, node_availability_summary=NodeAvailabilitySummary({}))  # noqa: E731
    nodes, left = get_nodes_for(config["available_node_types"], {}, config["head_node_type"], 10, [demand], scorer)
    return dict(nodes) if not left else {}


def registry_accelerators() -> set[str]:
    registry = ModelRegistry.from_yaml(REPO / "serve" / "models.example.yaml")
    return {m.accelerator_type for m in registry.models.values() if m.accelerator_type}


def test_batch_cluster_autoscales_every_group_from_zero() -> None:
    cluster = one("RayCluster")
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    assert cluster["spec"]["autoscalerOptions"]["upscalingMode"] in {"Default", "Conservative", "Aggressive"}
    config = autoscaling_config("RayCluster")
    assert config["idle_timeout_minutes"] == 5
    head = config["available_node_types"]["headgroup"]
    assert head["resources"]["CPU"] == 0  # no work on the head
    groups = {n: t for n, t in config["available_node_types"].items() if n != "headgroup"}
    assert set(groups) == {"cpu", "gpu-l4", "gpu-a10g", "gpu-h100"}
    for name, group in groups.items():
        assert group["min_workers"] == 0 < group["max_workers"], name
    assert placed(config, {"CPU": 4.0}) == {"cpu": 1}
    for accelerator in ("L4", "A10G", "H100"):
        demand = {"GPU": 1.0, f"accelerator_type:{accelerator}": 0.001}  # a stage with accelerator_type
        assert placed(config, demand) == {f"gpu-{accelerator.lower()}": 1}, accelerator
    # Every accelerator the model registry asks for has a group (batch stages use the registry).
    offered = {k.removeprefix("accelerator_type:") for g in groups.values() for k in g["resources"] if k.startswith("accelerator_type:")}
    assert registry_accelerators() <= offered


def test_without_the_accelerator_resource_a_gpu_group_never_starts_for_it() -> None:
    cluster = copy.deepcopy(one("RayCluster"))
    for group in cluster["spec"]["workerGroupSpecs"]:
        group["rayStartParams"].pop("resources", None)
    config = _derive_autoscaling_config_from_ray_cr({"metadata": {**cluster["metadata"], "namespace": "farm"}, "spec": cluster["spec"]})
    assert placed(config, {"GPU": 1.0, "accelerator_type:L4": 0.001}) == {}


def test_generation_cluster_offers_what_its_serve_config_asks_for() -> None:
    config = autoscaling_config("RayService")
    serve = yaml.safe_load(one("RayService")["spec"]["serveConfigV2"])
    wanted = {app["args"]["llm_configs"][0]["accelerator_type"] if app["name"] == "llm" else app["args"]["model"]["accelerator_type"]
              for app in serve["applications"]}
    for accelerator in wanted:
        assert placed(config, {"GPU": 1.0, f"accelerator_type:{accelerator}": 0.001}), accelerator


def test_gpu_groups_select_nodes_with_their_gpu() -> None:
    products = {"L4": "NVIDIA-L4", "A10G": "NVIDIA-A10G", "H100": "NVIDIA-H100-80GB-HBM3"}
    for kind in ("RayCluster", "RayService"):
        obj = one(kind)
        spec = obj["spec"] if kind == "RayCluster" else obj["spec"]["rayClusterConfig"]
        for group in spec["workerGroupSpecs"]:
            if not group["groupName"].startswith("gpu-"):
                continue
            accelerator = group["rayStartParams"]["resources"].split("accelerator_type:")[1].split('\\"')[0]
            pod = group["template"]["spec"]
            assert pod["nodeSelector"]["nvidia.com/gpu.product"] == products[accelerator]
            assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]


# -- settings: names, values, where they come from ------------------------------------------

def config_maps() -> dict[str, dict[str, str]]:
    return {o["metadata"]["name"]: o["data"] for _, o in OBJECTS if o["kind"] == "ConfigMap"}


def secrets() -> dict[str, dict[str, str]]:
    return {o["metadata"]["name"]: o["stringData"] for _, o in OBJECTS if o["kind"] == "Secret"}


def test_every_farm_variable_is_a_setting() -> None:
    names = set(config_maps()["storycore-farm-config"]) | set(secrets()["storycore-farm"])
    for _, obj in OBJECTS:
        names |= {e["name"] for c in containers(obj) for e in c.get("env", []) if e["name"].startswith("FARM_")}
    assert names <= farm_env_names(), names - farm_env_names()


def test_credentials_live_in_the_secret_only() -> None:
    assert set(secrets()["storycore-farm"]) == secret_env_names()
    assert not set(config_maps()["storycore-farm-config"]) & secret_env_names()
    for _, obj in OBJECTS:
        for container in containers(obj):
            for item in container.get("env", []):
                if item["name"] in secret_env_names() | {"RAY_AUTH_TOKEN", "HF_TOKEN"}:
                    assert "valueFrom" in item, item["name"]


def test_control_plane_settings_point_at_the_clusters(monkeypatch: pytest.MonkeyPatch) -> None:
    from farm.settings import Settings

    (api,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    env = pod_env(api, config_maps(), secrets())
    for name in list(os.environ):
        if name.startswith("FARM_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert settings.storage.backend == "s3" and settings.db.url.startswith("postgresql+psycopg://")
    assert (settings.api.host, settings.api.port) == ("0.0.0.0", api["ports"][0]["containerPort"])
    # KubeRay names the head service <RayCluster>-head-svc and Serve's <RayService>-serve-svc.
    jobs_api = urlsplit(settings.ray.dashboard_url)
    assert jobs_api.hostname == f"{one('RayCluster')['metadata']['name']}-head-svc" and jobs_api.port == 8265
    serve_url = urlsplit(settings.serve.url)
    serve = yaml.safe_load(one("RayService")["spec"]["serveConfigV2"])
    assert serve_url.hostname == f"{one('RayService')['metadata']['name']}-serve-svc"
    assert serve_url.port == serve["http_options"]["port"]
    # The registry file is the models ConfigMap, mounted where the setting says.
    mounts = {m["mountPath"]: m["name"] for m in api["volumeMounts"]}
    volumes = {v["name"]: v for v in one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    registry = settings.models.registry_file
    assert volumes[mounts[str(registry.parent)]]["configMap"]["name"] == "storycore-farm-models"
    assert registry.name in config_maps()["storycore-farm-models"]
    assert settings.serve.deploy is False  # the RayService serves; the control plane deploys nothing
    # Runners take the credentials from their pods (envFrom the Secret), not from the submission.
    assert settings.dispatch.runner_secrets == "node"


def test_ray_containers_get_the_farm_settings_and_the_token() -> None:
    batch = [c for c in containers(one("RayCluster"))]
    assert len(batch) == 5
    for container in batch:
        sources = [s.get("configMapRef", s.get("secretRef"))["name"] for s in container["envFrom"]]
        assert sources == ["storycore-farm-config", "storycore-farm"]
    for kind in ("RayCluster", "RayService"):
        obj = one(kind)
        spec = obj["spec"] if kind == "RayCluster" else obj["spec"]["rayClusterConfig"]
        for container in [*containers(obj), spec["autoscalerOptions"]]:
            env = {e["name"]: e for e in container["env"]}
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "ray-auth-token"


def test_models_config_map_is_the_example_registry() -> None:
    models = yaml.safe_load(config_maps()["storycore-farm-models"]["models.yaml"])
    assert models == yaml.safe_load((REPO / "serve" / "models.example.yaml").read_text())


# -- labels and selectors ----------------------------------------------------------------------

def test_services_and_policies_select_the_right_pods() -> None:
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one("Service")["spec"]["selector"].items() <= labels.items()
    for name in ("storycore-batch-internal", "storycore-generation-internal"):
        rules = one("NetworkPolicy", name)["spec"]["ingress"]
        front_door = [r for r in rules if r["from"][0].get("podSelector", {}).get("matchLabels", {}).items() <= labels.items()
                      and "podSelector" in r["from"][0]]
        assert front_door, name
    # The control plane reaches the batch cluster's Jobs API and nothing else of it.
    batch_policy = one("NetworkPolicy", "storycore-batch-internal")
    (rule,) = [r for r in batch_policy["spec"]["ingress"]
               if r["from"][0].get("podSelector", {}).get("matchLabels") == {"app.kubernetes.io/name": "storycore-farm-api"}]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8265}]
    role = batch_policy["spec"]["podSelector"]["matchLabels"]
    cluster = one("RayCluster")["spec"]
    for template in [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]:
        assert role.items() <= template["metadata"]["labels"].items()


def test_documents_parse_one_by_one() -> None:
    for path in manifest_files():
        assert documents(path), path
