"""The multi-node cluster and a farm on it, started once per module that asks for them.

The farm is the embedded control plane (API + dispatcher) unchanged, pointed
at the cluster, on the session's PostgreSQL and S3 server. Nothing is shared
through the file system on purpose: objects live in S3, runners find their
secrets in their node's environment (``runner_secrets = "node"``), each
worker node keeps its media cache in a directory of its own, and the Ray Job
entrypoint's interpreter is the one the nodes name (a wrapper under the
nodes' own bin directory), not the control plane's.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from farm.runner_env import job_env
from tests.cluster.multinode import MultiNodeCluster
from tests.farm.dispatch.conftest import JobFarm, make_settings, start_job_farm
from tests.fixtures.models import model_cache_dir
from tests.fixtures.s3 import S3Server, unique_bucket

WORKERS = {"w1": 4, "w2": 4}  # logical CPUs per worker node (this machine has 2 cores for all of them)


@dataclass
class MultiNodeFarm:
    cluster: MultiNodeCluster
    jf: JobFarm
    node_homes: dict[str, Path]  # worker node name → a directory of its own (its media cache is under it)
    runner_python: Path


def _runner_python(bin_dir: Path) -> Path:
    """The interpreter the nodes run the entrypoint with: here a wrapper around this venv's python."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "farm-python"
    path.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    path.chmod(0o755)
    return path


def _registry(path: Path, models: dict[str, Path]) -> Path:
    # Two engines from the start (the registry's min_replicas is the batch pool's floor too), two images per call.
    path.write_text(yaml.safe_dump({"models": [
        {"name": "tiny-sd", "kind": "diffusion", "source": str(models["tiny-sd"]), "max_batch_size": 2,
         "min_replicas": 2, "max_replicas": 2},
    ]}))
    return path


@pytest.fixture(scope="module")
def multinode_farm(module_database: str, s3_server: S3Server, demo_models: dict[str, Path],
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiNodeFarm]:
    postgres_url = module_database
    root = tmp_path_factory.mktemp("multinode")
    cluster = MultiNodeCluster(WORKERS)
    settings = make_settings(root / "control-plane", postgres_url, cluster.head)  # Ray addresses: set once it runs
    settings.storage.backend = "s3"
    settings.s3.endpoint, settings.s3.access_key = s3_server.endpoint, s3_server.access_key
    settings.s3.secret_key = SecretStr(s3_server.secret_key)
    settings.s3.bucket, settings.s3.region = unique_bucket(), s3_server.region
    settings.models.cache_dir = model_cache_dir()  # on a real cluster: a hub cache or a shared volume
    settings.models.registry_file = _registry(root / "models.yaml", demo_models)
    settings.dispatch.runner_secrets = "node"
    runner_python = _runner_python(root / "node-bin")
    settings.dispatch.runner_python = str(runner_python)

    _, secrets = job_env(settings)  # what every node must hold itself: never in a job submission
    homes = {name: root / f"home-{name}" for name in WORKERS}
    cluster.head_env = secrets
    cluster.worker_env = {name: {**secrets, "FARM_STORAGE__CACHE_DIR": str(home / "cache" / "media")}
                          for name, home in homes.items()}
    with cluster:
        settings.ray.address, settings.ray.dashboard_url = cluster.head.address, cluster.head.dashboard_url
        jf = start_job_farm(settings)
        try:
            yield MultiNodeFarm(cluster, jf, homes, runner_python)
        finally:
            jf.close()
