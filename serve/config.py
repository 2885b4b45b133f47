"""The farm's Serve applications as one Serve config (the file ``serve deploy`` takes).

One LLM application (``ray.serve.llm``) at ``/llm`` holding every model vLLM
serves (the LLMs, and vision-language models on the ``vllm`` runtime), one
diffusion application per diffusion model at ``/diffusion/<slug>``, and one
application per vision-language model on the ``transformers`` runtime at
``/vlm/<slug>`` (the farm's own deployment, for CPUs). ``farm up`` PUTs this config to the local head's
dashboard; ``serve/serve_config.example.yaml`` and the KubeRay RayService
carry the same thing built from ``serve/models.example.yaml``. The HTTP proxy
binds to loopback by default: only the farm's front door talks to it.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from serve.llm import LLM_IMPORT_PATH, llm_app_args
from serve.registry import ModelRegistry, ModelSpec

LLM_APP = "llm"
LLM_ROUTE = "/llm"
DIFFUSION_IMPORT_PATH = "serve.diffusion.app:build_app"
VLM_IMPORT_PATH = "serve.vlm.app:build_app"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001


def slug(name: str) -> str:
    """A model name as a URL path segment and application name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"


def diffusion_app_name(name: str) -> str:
    return f"diffusion-{slug(name)}"


def diffusion_route(name: str) -> str:
    return f"/diffusion/{slug(name)}"


def vlm_app_name(name: str) -> str:
    return f"vlm-{slug(name)}"


def vlm_route(name: str) -> str:
    return f"/vlm/{slug(name)}"


def vlm_application(spec: ModelSpec, *, limits: dict[str, Any] | None = None) -> dict[str, Any]:
    if spec.kind != "vlm" or spec.runtime != "transformers":
        raise ValueError(f"{spec.name} is not a vision-language model on the transformers runtime")
    args: dict[str, Any] = {"model": spec.model_dump(mode="json", exclude_defaults=True)}
    if limits:
        args["limits"] = limits
    return {"name": vlm_app_name(spec.name), "route_prefix": vlm_route(spec.name), "import_path": VLM_IMPORT_PATH, "args": args}


def llm_application(specs: list[ModelSpec], *, ingress_cpus: float = 1) -> dict[str, Any]:
    return {
        "name": LLM_APP,
        "route_prefix": LLM_ROUTE,
        "import_path": LLM_IMPORT_PATH,
        "args": llm_app_args(specs, ingress_cpus=ingress_cpus),
    }


def diffusion_application(spec: ModelSpec, *, limits: dict[str, Any] | None = None) -> dict[str, Any]:
    if spec.kind != "diffusion":
        raise ValueError(f"{spec.name} is a {spec.kind} model, not a diffusion model")
    args: dict[str, Any] = {"model": spec.model_dump(mode="json", exclude_defaults=True)}
    if limits:
        args["limits"] = limits
    return {
        "name": diffusion_app_name(spec.name),
        "route_prefix": diffusion_route(spec.name),
        "import_path": DIFFUSION_IMPORT_PATH,
        "args": args,
    }


def serve_config(
    registry: ModelRegistry,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    proxy_location: str = "HeadOnly",
    ingress_cpus: float = 1,
    extra_applications: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The whole Serve config (``ServeDeploySchema``) for ``registry``'s models.

    Locally the proxy runs on the head and binds loopback; on a cluster pass
    ``host="0.0.0.0"`` and ``proxy_location="EveryNode"`` and keep the port
    behind a cluster-internal service (see ``cluster/kuberay/``).
    """
    apps: list[dict[str, Any]] = []
    llms = [spec for spec in registry.models.values() if spec.on_vllm]
    if llms:
        apps.append(llm_application(llms, ingress_cpus=ingress_cpus))
    apps += [diffusion_application(spec) for spec in registry.of_kind("diffusion")]
    apps += [vlm_application(spec) for spec in registry.of_kind("vlm") if spec.runtime == "transformers"]
    apps += extra_applications or []
    return {
        "proxy_location": proxy_location,
        "http_options": {"host": host, "port": port},
        "applications": apps,
    }


def serve_url(config: dict[str, Any]) -> str:
    """Base URL of the HTTP proxy a config asks for (for the front door)."""
    http = config.get("http_options", {})
    host = http.get("host", DEFAULT_HOST)
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{http.get('port', DEFAULT_PORT)}"


def to_yaml(config: dict[str, Any], header: str = "") -> str:
    body = yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=100)
    return header + body


#: How ``serve/serve_config.example.yaml`` is made from ``serve/models.example.yaml``.
CLUSTER_OPTIONS: dict[str, Any] = {"host": "0.0.0.0", "port": 8000, "proxy_location": "EveryNode"}
