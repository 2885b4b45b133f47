"""Offline checks for the deployment files under cluster/ and docker/.

- KubeRay objects against the operator's CRD schemas (../shared/schemas/kuberay/), made
  strict the way the API server's strict field validation is: an object schema that lists
  ``properties`` but says nothing of other fields (no ``additionalProperties``, no
  ``x-kubernetes-preserve-unknown-fields``) is closed, so a misspelt field is an error
  instead of being dropped in silence.
- Core Kubernetes objects with ``kubernetes-validate`` (its bundled, strict schemas).
- The farm's setting names, as the environment spells them (``FARM_<GROUP>__<FIELD>``).
- kustomize's ``images:`` rule, to check that it reaches every container.

Nothing here uses the network; ``forbid_network`` makes any attempt fail the test.
"""

from __future__ import annotations

import copy
import functools
import gzip
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from pydantic import BaseModel, SecretStr

REPO = Path(__file__).resolve().parents[2]
KUBERAY = REPO / "cluster" / "kuberay"
LAUNCHER = REPO / "cluster" / "launcher"
SHARED_CRDS = REPO.parent / "shared" / "schemas" / "kuberay"  # the house copy, beside the checkout
BUNDLED_CRDS = Path(__file__).with_name("crds")  # the same files, gzipped, for a clone on its own

# The Kubernetes version core objects are checked against: a release kubernetes-validate
# ships and the managed services (EKS, GKE) offered in 2026.
K8S_VERSION = "1.33"

IMAGE_CPU = "storycore-farm:0.1.0-cpu"
IMAGE_CUDA = "storycore-farm:0.1.0-cuda"


# -- strict CRD schemas ---------------------------------------------------------------------

def strict(schema: Any) -> Any:
    """A copy of an OpenAPI v3 schema in which every object schema with ``properties`` but no
    ``additionalProperties`` and no ``x-kubernetes-preserve-unknown-fields`` is closed."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {name: strict(sub) for name, sub in out["properties"].items()}
        if "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = strict(out["additionalProperties"])
    if "patternProperties" in out:
        out["patternProperties"] = {p: strict(sub) for p, sub in out["patternProperties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = strict(out["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = [strict(sub) for sub in out[key]]
    if "not" in out:
        out["not"] = strict(out["not"])
    return out


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) → that CRD version's openAPIV3Schema, for every CRD file."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    paths = sorted(SHARED_CRDS.glob("*.yaml")) or sorted(BUNDLED_CRDS.glob("*.yaml.gz"))
    assert paths, f"no CRDs under {SHARED_CRDS} or {BUNDLED_CRDS}"
    for path in paths:
        text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
        crd = yaml.load(text, Loader=yaml.CSafeLoader)  # 1 MB each: the C loader
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            found[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return found


@functools.cache
def _crd_validator(api_version: str, kind: str, closed: bool) -> jsonschema.protocols.Validator:
    schema = crd_schemas()[(api_version, kind)]
    return jsonschema.Draft7Validator(strict(schema) if closed else schema)


@functools.cache
def _object_meta_validator() -> jsonschema.protocols.Validator:
    """ObjectMeta from kubernetes-validate's strict definitions (a CRD leaves metadata open)."""
    import json

    import importlib_resources
    from referencing import Registry, Resource

    folder = importlib_resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{K8S_VERSION}.0-local-strict"
    definitions = Resource.from_contents(json.loads((folder / "_definitions.json").read_text()))
    ref = f"{definitions.id()}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    return jsonschema.Draft202012Validator({"$ref": ref}, registry=definitions @ Registry())


def crd_errors(obj: dict[str, Any], *, closed: bool = True) -> list[str]:
    """What the KubeRay CRD schema (strict unless ``closed=False``) finds wrong with ``obj``."""
    validator = _crd_validator(obj["apiVersion"], obj["kind"], closed)
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
    errors += [f"metadata.{'.'.join(map(str, e.absolute_path))}: {e.message}"
               for e in _object_meta_validator().iter_errors(obj.get("metadata", {}))]
    return errors


def core_errors(obj: dict[str, Any]) -> list[str]:
    """What kubernetes-validate (strict schemas of K8S_VERSION) finds wrong with ``obj``."""
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


def is_kuberay(obj: dict[str, Any]) -> bool:
    return obj["apiVersion"].split("/")[0] == "ray.io"


# -- manifests --------------------------------------------------------------------------------

def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifest_files() -> list[Path]:
    return sorted(KUBERAY.glob("*.yaml"))


def objects() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in manifest_files():
        if path.name == "kustomization.yaml":
            continue
        for doc in documents(path):
            yield path, doc


def containers(obj: Any) -> Iterator[dict[str, Any]]:
    """Every container of ``obj``, as kustomize's image rule finds them: any item of a list
    under a key named ``containers`` or ``initContainers``, wherever it is."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from containers(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from containers(item)


def set_images(obj: dict[str, Any], images: list[dict[str, str]]) -> dict[str, Any]:
    """kustomize's ``images:`` transform (its legacy filter: every container, custom resources
    included): an image whose name matches gets ``newName`` / ``newTag``."""
    out = copy.deepcopy(obj)
    for container in containers(out):
        name, _, tag = container["image"].partition(":")
        for rule in images:
            if rule["name"] == name:
                name = rule.get("newName", name)
                tag = rule.get("newTag", tag)
                container["image"] = f"{name}:{tag}" if tag else name
    return out


def pod_env(container: dict[str, Any], config_maps: dict[str, dict[str, str]],
            secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The environment ``container`` gets from its envFrom and plain ``env`` values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_maps[source["configMapRef"]["name"]])
        else:
            env.update(secrets[source["secretRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


# -- the farm's settings ----------------------------------------------------------------------

def farm_env_names() -> set[str]:
    """Every ``FARM_*`` variable the farm's Settings read."""
    from farm.settings import Settings

    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        group = field.annotation
        if isinstance(group, type) and issubclass(group, BaseModel):
            names |= {f"FARM_{name.upper()}__{sub.upper()}" for sub in group.model_fields}
        else:
            names.add(f"FARM_{name.upper()}")
    return names


def secret_env_names() -> set[str]:
    """The settings that hold credentials: SecretStr fields, the database URL (its password)
    and the S3 access key that goes with the secret key."""
    from farm.settings import Settings

    names = {"FARM_DB__URL", "FARM_S3__ACCESS_KEY"}
    for name, field in Settings.model_fields.items():
        group = field.annotation
        if isinstance(group, type) and issubclass(group, BaseModel):
            names |= {f"FARM_{name.upper()}__{sub.upper()}" for sub, f in group.model_fields.items()
                      if f.annotation is SecretStr}
    return names


# -- no network ------------------------------------------------------------------------------

class NetworkUsed(AssertionError):
    pass


def forbid_network(monkeypatch: Any) -> None:
    """Any attempt to open a connection fails the test: the validation is offline."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise NetworkUsed(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
