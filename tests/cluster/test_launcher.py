"""Ray cluster launcher configs (cluster/launcher/*.yaml), validated offline.

Ray's own schema (prepare_config + validate_config, as `ray up` does before it calls any
cloud), and, since Ray leaves node_config free-form, each node_config against the cloud
API that receives it: EC2 RunInstances (botocore's service model) and Compute Engine's
instances.insert (the compute v1 discovery document shipped with google-api-python-client).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import botocore.session
import jsonschema
import pytest
import yaml
from botocore.validate import ParamValidator
from ray.autoscaler._private.node_provider_availability_tracker import (
    NodeAvailabilityRecord,
    NodeAvailabilitySummary,
    UnavailableNodeInformation,
)
from ray.autoscaler._private.resource_demand_scheduler import _default_utilization_scorer, get_nodes_for
from ray.autoscaler._private.util import prepare_config, validate_config

from cluster.launcher.scoring import spot_first
from cluster.launcher.smoke import bundle
from serve.registry import ModelRegistry
from tests.cluster.validation import IMAGE_CUDA, LAUNCHER, REPO, farm_env_names, forbid_network

CLOUDS = ("aws", "gcp")
# What each instance / machine type brings, from the clouds' published specifications.
HARDWARE = {
    "m7i.2xlarge": (8, 0, None), "m7i.4xlarge": (16, 0, None),
    "g6.2xlarge": (8, 1, "L4"), "g5.2xlarge": (8, 1, "A10G"), "p5.48xlarge": (192, 8, "H100"),
    "n2-standard-8": (8, 0, None), "n2-standard-16": (16, 0, None),
    "g2-standard-8": (8, 1, "L4"), "a3-highgpu-8g": (208, 8, "H100"),
}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_network(monkeypatch)


def load(cloud: str) -> dict[str, Any]:
    return yaml.safe_load((LAUNCHER / f"{cloud}.yaml").read_text())


def prepared(cloud: str) -> dict[str, Any]:
    config = prepare_config(copy.deepcopy(load(cloud)))
    validate_config(config)
    return config


def workers(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: t for name, t in config["available_node_types"].items() if name != config["head_node_type"]}


def instance_type(node_type: dict[str, Any]) -> str:
    config = node_type["node_config"]
    return config.get("InstanceType") or config["machineType"]


# -- Ray's schema -----------------------------------------------------------------------------

@pytest.mark.parametrize("cloud", CLOUDS)
def test_ray_validates_the_config(cloud: str) -> None:
    config = prepared(cloud)
    assert config["provider"]["type"] == cloud
    assert config["head_node_type"] == "head"
    head = config["available_node_types"]["head"]
    assert head["resources"] == {"CPU": 0} and head["max_workers"] == 0  # no tasks on the head
    assert config["idle_timeout_minutes"] == 5
    for name, node_type in workers(config).items():
        assert 0 == node_type["min_workers"] < node_type["max_workers"] <= config["max_workers"], name
    assert config["docker"]["image"] == IMAGE_CUDA


@pytest.mark.parametrize("cloud", CLOUDS)
def test_ray_rejects_a_misspelt_field(cloud: str) -> None:
    config = prepare_config(copy.deepcopy(load(cloud)))
    config["idle_timeout_minute"] = 5
    with pytest.raises(jsonschema.ValidationError, match="idle_timeout_minute"):
        validate_config(config)
    config = prepare_config(copy.deepcopy(load(cloud)))
    config["available_node_types"]["gpu-l4-spot"]["max_worker"] = 4
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(config)


# -- node_config against the cloud APIs -------------------------------------------------------

@functools.cache
def run_instances() -> Any:
    return botocore.session.get_session().get_service_model("ec2").operation_model("RunInstances").input_shape


def enum_errors(value: Any, shape: Any, path: str = "") -> list[str]:
    """botocore's ParamValidator checks types and required members, not enums: this does."""
    if shape.type_name == "structure" and isinstance(value, dict):
        return [e for k, v in value.items() if k in shape.members for e in enum_errors(v, shape.members[k], f"{path}.{k}")]
    if shape.type_name == "list" and isinstance(value, list):
        return [e for i, v in enumerate(value) for e in enum_errors(v, shape.member, f"{path}[{i}]")]
    if shape.type_name == "string" and getattr(shape, "enum", None) and value not in shape.enum:
        return [f"{path}: {value!r} is not one of the {len(shape.enum)} values EC2 accepts"]
    return []


def ec2_errors(node_config: dict[str, Any]) -> list[str]:
    # What Ray's AWS node provider sends: the node_config plus counts (tags and subnet are its own).
    params = {**node_config, "MinCount": 1, "MaxCount": 1}
    report = ParamValidator().validate(params, run_instances())
    return ([report.generate_report()] if report.has_errors() else []) + enum_errors(params, run_instances())


@functools.cache
def compute_instance_schema() -> dict[str, Any]:
    """The Compute Engine v1 ``Instance`` (the body of instances.insert) as a closed JSON schema."""
    import googleapiclient

    path = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "compute.v1.json"
    schemas = json.loads(path.read_text())["schemas"]

    def convert(s: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in s:
            return {"$ref": f"#/$defs/{s['$ref']}"}
        out: dict[str, Any] = {}
        kind = s.get("type")
        if kind == "string" and s.get("format") in ("int64", "uint64"):
            out["type"] = ["string", "integer"]  # JSON carries 64-bit integers as strings; both are accepted
        elif kind and kind != "any":
            out["type"] = kind
        if "enum" in s:
            out["enum"] = s["enum"]
        if "properties" in s:
            out["properties"] = {k: convert(v) for k, v in s["properties"].items()}
            out["additionalProperties"] = convert(s["additionalProperties"]) if "additionalProperties" in s else False
        elif "additionalProperties" in s:
            out["additionalProperties"] = convert(s["additionalProperties"])
        if "items" in s:
            out["items"] = convert(s["items"])
        return out

    return {"$ref": "#/$defs/Instance", "$defs": {name: convert(s) for name, s in schemas.items()}}


def compute_errors(node_config: dict[str, Any]) -> list[str]:
    # What Ray's GCP node provider sends: the node_config plus the instance's name and labels.
    body = {**node_config, "name": "ray-storycore-farm-worker-0", "labels": {"ray-cluster-name": "storycore-farm"}}
    validator = jsonschema.Draft202012Validator(compute_instance_schema())
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]


def test_aws_node_configs_are_valid_run_instances_requests() -> None:
    for name, node_type in load("aws")["available_node_types"].items():
        assert ec2_errors(node_type["node_config"]) == [], name


def test_ec2_model_catches_misspelt_and_unknown_values() -> None:
    good = load("aws")["available_node_types"]["gpu-l4-spot"]["node_config"]
    assert any("InstanceTyp" in e for e in ec2_errors({**good, "InstanceTyp": "g6.2xlarge"}))
    assert any("g6.2xlargee" in e for e in ec2_errors({**good, "InstanceType": "g6.2xlargee"}))
    spot = {**good, "InstanceMarketOptions": {"MarketType": "spott"}}
    assert any("spott" in e for e in ec2_errors(spot))
    disk = {**good, "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": "200"}}]}
    assert ec2_errors(disk)  # a string where EC2 wants an integer


def test_gcp_node_configs_are_valid_instances() -> None:
    for name, node_type in load("gcp")["available_node_types"].items():
        assert compute_errors(node_type["node_config"]) == [], name


def test_compute_schema_catches_misspelt_and_unknown_values() -> None:
    good = load("gcp")["available_node_types"]["gpu-l4-spot"]["node_config"]
    assert any("machineTyp" in e for e in compute_errors({**good, "machineTyp": "g2-standard-8"}))
    bad = {**good, "scheduling": {**good["scheduling"], "provisioningModel": "PREEMPTIBLE"}}
    assert any("PREEMPTIBLE" in e for e in compute_errors(bad))
    bad = {**good, "scheduling": {**good["scheduling"], "onHostMaintenanc": "TERMINATE"}}
    assert any("onHostMaintenanc" in e for e in compute_errors(bad))


# -- node types: hardware, spot twins, the registry's accelerators ---------------------------

@pytest.mark.parametrize("cloud", CLOUDS)
def test_node_type_resources_match_the_hardware(cloud: str) -> None:
    for name, node_type in load(cloud)["available_node_types"].items():
        cpus, gpus, accelerator = HARDWARE[instance_type(node_type)]
        resources = node_type["resources"]
        if name != "head":
            assert resources["CPU"] == cpus, name
        assert resources.get("GPU", 0) == gpus, name
        accelerators = [k.removeprefix("accelerator_type:") for k in resources if k.startswith("accelerator_type:")]
        assert accelerators == ([accelerator] if accelerator else []), name
        if gpus:  # the container sees the GPUs
            assert "--gpus all" in node_type["docker"]["worker_run_options"], name


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_worker_kind_has_a_spot_and_an_on_demand_twin(cloud: str) -> None:
    types = workers(load(cloud))
    kinds = {re.sub(r"-(spot|ondemand)$", "", name) for name in types}
    assert set(types) == {f"{k}-{m}" for k in kinds for m in ("spot", "ondemand")}
    for kind in kinds:
        spot, ondemand = types[f"{kind}-spot"], types[f"{kind}-ondemand"]
        assert spot["resources"] == ondemand["resources"] and instance_type(spot) == instance_type(ondemand)
        if cloud == "aws":
            assert spot["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
            assert "InstanceMarketOptions" not in ondemand["node_config"]
        else:
            assert spot["node_config"]["scheduling"]["provisioningModel"] == "SPOT"
            assert ondemand["node_config"].get("scheduling", {}).get("provisioningModel", "STANDARD") == "STANDARD"


def registry_accelerators() -> set[str]:
    registry = ModelRegistry.from_yaml(REPO / "serve" / "models.example.yaml")
    return {m.accelerator_type for m in registry.models.values() if m.accelerator_type}


@pytest.mark.parametrize("cloud", CLOUDS)
def test_the_registry_accelerators_are_offered(cloud: str) -> None:
    offered = {k.removeprefix("accelerator_type:") for t in workers(load(cloud)).values()
               for k in t["resources"] if k.startswith("accelerator_type:")}
    missing = registry_accelerators() - offered
    # Compute Engine has no A10G; gcp.yaml and cluster/README.md say so.
    assert missing == (set() if cloud == "aws" else {"A10G"})


# -- spot first, on-demand when spot fails (cluster/launcher/scoring.py) ---------------------

def choose(config: dict[str, Any], demand: list[dict[str, float]], scorer: Any, unavailable: set[str] = frozenset()) -> dict[str, int]:
    summary = NodeAvailabilitySummary({
        name: NodeAvailabilityRecord(name, False, 0.0, UnavailableNodeInformation("InsufficientInstanceCapacity", "no spot capacity"))
        for name in unavailable})
    nodes, left = get_nodes_for(
        config["available_node_types"], {}, config["head_node_type"], 10, demand,
        functools.partial(scorer, node_availability_summary=summary))
    assert left == []
    return dict(nodes)


def test_spot_first_then_on_demand_when_a_spot_launch_failed() -> None:
    config = prepared("aws")
    l4 = [{"GPU": 1.0, "accelerator_type:L4": 0.001}]  # a task with accelerator_type="L4"
    assert choose(config, l4, spot_first) == {"gpu-l4-spot": 1}
    assert choose(config, l4, spot_first, {"gpu-l4-spot"}) == {"gpu-l4-ondemand": 1}
    assert choose(config, [{"CPU": 4.0}], spot_first) == {"cpu-spot": 1}  # never a GPU node for CPU work
    assert choose(config, [{"CPU": 4.0}], spot_first, {"cpu-spot"}) == {"cpu-ondemand": 1}
    assert choose(config, [bundle("H100")], spot_first) == {"gpu-h100-spot": 1}
    # Ray's default scorer ignores the failed launches: it would try the same spot type again.
    assert choose(config, l4, _default_utilization_scorer, {"gpu-l4-spot"}) == {"gpu-l4-spot": 1}


def test_the_head_runs_the_scorer_and_the_control_plane() -> None:
    for cloud in CLOUDS:
        config = load(cloud)
        head = " ".join(config["head_start_ray_commands"])
        assert "RAY_AUTOSCALER_UTILIZATION_SCORER=cluster.launcher.scoring.spot_first ray start --head" in head
        assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head and "--num-cpus=0" in head
        assert "nohup farm up" in head
        # Runners read the secrets from their node's farm.env, never from the job submission.
        assert "FARM_DISPATCH__RUNNER_SECRETS=node" in head
        assert "ray start --address=$RAY_HEAD_IP:6379" in " ".join(config["worker_start_ray_commands"])
        # Every node reads the settings and secrets synced by file_mounts.
        assert config["file_mounts"] == {"~/farm-env": "cluster/launcher/farm-env"}
        for command in config["head_start_ray_commands"][1:] + config["worker_start_ray_commands"][1:]:
            assert ". ~/farm-env/farm.env" in command
        names = set(re.findall(r"\b(FARM_[A-Z_]+)=", head))
        assert names and names <= farm_env_names(), names - farm_env_names()


def test_the_scorer_path_is_what_ray_loads() -> None:
    from ray.autoscaler._private.loader import load_function_or_class

    assert load_function_or_class("cluster.launcher.scoring.spot_first") is spot_first


def test_farm_env_example_names_real_settings() -> None:
    keys = [line.split("=", 1)[0] for line in (LAUNCHER / "farm.env.example").read_text().splitlines()
            if line and not line.startswith("#")]
    assert len(keys) == len(set(keys))
    farm = {k for k in keys if k.startswith("FARM_")}
    assert farm <= farm_env_names(), farm - farm_env_names()
    assert {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "FARM_DB__URL", "FARM_S3__SECRET_KEY"} <= set(keys)
    # The file is read by `set -a; . farm.env`: KEY=value, nothing for the shell to expand.
    for line in (LAUNCHER / "farm.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S.*", line) and not set("$`'\"") & set(line), line
