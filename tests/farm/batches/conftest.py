"""A farm with the tiny models in its registry, driven through the official `openai` client.

The registry has ``tiny-llama`` on ``batch_engine: serve`` — the session's
warm deployment (``serve_apps``), same weights — for the tests whose subject
is the farm's batch bookkeeping (resume, cancel, expiry), which then start
no engine of their own; ``tiny-llama-job`` (same weights) on a job-scoped
engine for the tests of that path; and ``tiny-llama-offline``, on ``serve``
with no deployment anywhere.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from openai import OpenAI

from cluster.local import LocalRayHead
from tests.farm.dispatch.conftest import JobFarm, make_settings, start_job_farm

TERMINAL = {"completed", "failed", "cancelled", "expired"}


@dataclass
class BatchFarm:
    jf: JobFarm
    keys: dict[str, str]

    def client(self, who: str = "a") -> OpenAI:
        return OpenAI(base_url=f"{self.jf.settings.base_url}/v1", api_key=self.keys[who], max_retries=0, timeout=60)

    def submit(self, lines: list[dict[str, Any] | str], endpoint: str = "/v1/chat/completions", who: str = "a") -> Any:
        body = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
        c = self.client(who)
        f = c.files.create(file=("requests.jsonl", body.encode()), purpose="batch")
        return c.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h", metadata={"test": "yes"})  # type: ignore[arg-type]

    def wait(self, batch_id: str, until: Any = None, timeout: float = 600, who: str = "a") -> Any:
        c = self.client(who)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            b = c.batches.retrieve(batch_id)
            if (until(b) if until else b.status in TERMINAL):
                return b
            time.sleep(0.5)
        raise AssertionError(f"batch {batch_id} timed out: {b}")

    def lines(self, file_id: str | None, who: str = "a") -> list[dict[str, Any]]:
        if not file_id:
            return []
        text = self.client(who).files.content(file_id).text
        return [json.loads(x) for x in text.splitlines() if x.strip()]


SERVE, JOB, OFFLINE = "tiny-llama", "tiny-llama-job", "tiny-llama-offline"


def registry_file(tmp_path: Path, models: dict[str, Path]) -> Path:
    from serve.demo import DEMO_LLM_ENGINE_KWARGS

    llm = {"kind": "llm", "source": str(models["tiny-llama"]), "engine_kwargs": dict(DEMO_LLM_ENGINE_KWARGS)}
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": [
        {"name": SERVE, **llm, "batch_engine": "serve"},
        {"name": JOB, **llm},
        {"name": OFFLINE, **llm, "batch_engine": "serve"},
        {"name": "tiny-sd", "kind": "diffusion", "source": str(models["tiny-sd"])},
    ]}))
    return path


@pytest.fixture
def batch_farm(postgres_url: str, ray_cluster: LocalRayHead, tmp_path: Path, demo_models: dict[str, Path]) -> Iterator[BatchFarm]:
    settings = make_settings(tmp_path, postgres_url, ray_cluster)
    settings.models.registry_file = registry_file(tmp_path, demo_models)
    settings.webhooks.allow_private = True  # the test receiver listens on loopback
    settings.webhooks.retry_base_s = 0.2
    settings.webhooks.poll_s = 0.1
    jf = start_job_farm(settings)
    keys = {org: c.headers["Authorization"].removeprefix("Bearer ") for org, c in jf.clients.items()}
    yield BatchFarm(jf, keys)
    jf.close()


@pytest.fixture
def serve_batch_farm(serve_apps: Any, batch_farm: BatchFarm) -> BatchFarm:
    """A batch farm whose ``tiny-llama`` batches run on the session's warm Serve deployment."""
    return batch_farm
