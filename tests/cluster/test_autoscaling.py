"""GPU demand from the farm's queue drives Ray's autoscaler (fake multi-node provider, fake GPUs).

One autoscaling head for the module (`tests.cluster.fake_provider`): CPU-only,
with one GPU node type (one fake L4 each, up to five nodes, six seconds idle
timeout). The farm is the embedded control plane, unchanged, on the session's
PostgreSQL; its GPU jobs are ``debug.gpu_sleep`` (an extra kind, as
``FARM_EXTRA_KINDS`` adds any), whose tasks ask Ray for an L4 and run CPU code.

The figures (time to scale up and down) are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cluster.local import LocalRayHead, job_client
from farm.db import JobEvent
from farm.dispatch.autoscaler import METADATA_KEY, decode
from tests.cluster.fake_provider import ACCELERATOR, gpu_nodes, start_fake_cluster, wait_gpu_nodes
from tests.farm.dispatch.conftest import JobFarm, make_settings, start_job_farm
from tests.kinds.throwaway import isolate_registry

EXTRA = "tests.extra_kinds.gpu_sleep_kind"
KIND = "debug.gpu_sleep"


@pytest.fixture(scope="module")
def fake_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayHead]:
    head = start_fake_cluster(tmp_path_factory.mktemp("fake-gpus"), max_gpu_nodes=5)
    try:
        yield head
    finally:
        head.stop()


def gpu_farm(tmp_path: Path, db_url: str, head: LocalRayHead, monkeypatch: pytest.MonkeyPatch, **dispatch: Any) -> JobFarm:
    isolate_registry(monkeypatch)
    settings = make_settings(tmp_path, db_url, head, **dispatch).model_copy(update={"extra_kinds": [EXTRA]})
    return start_job_farm(settings)


def unix(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def demand_requests(head: LocalRayHead, since: float) -> list[tuple[float, int]]:
    """(submitted at, GPUs asked for) of every demand request the farm sent the cluster since ``since``."""
    jobs = [j for j in job_client(head.dashboard_url).list_jobs() if METADATA_KEY in (j.metadata or {})]
    found = [((j.start_time or 0) / 1000, int(sum(b.gpus * n for b, n in decode(j.metadata[METADATA_KEY])))) for j in jobs]
    return sorted(f for f in found if f[0] >= since)


def test_queued_gpu_jobs_bring_their_nodes_up_before_they_start_and_the_nodes_go_when_the_queue_drains(
        fake_cluster: LocalRayHead, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    head = fake_cluster
    assert gpu_nodes(head) == []
    jf = gpu_farm(tmp_path, postgres_url, head, monkeypatch, max_running=1)
    try:
        t0 = time.time()
        # Job 1 runs (the farm runs one job at a time) and keeps its GPU until the cluster has three GPU nodes:
        # only the queued jobs 2 and 3 can have asked for the other two.
        first = jf.submit(kind=KIND, spec={"accelerator_type": ACCELERATOR, "delay_s": 0.5, "until_gpu_nodes": 3})
        rest = [jf.submit(kind=KIND, spec={"accelerator_type": ACCELERATOR, "delay_s": 0.5}) for _ in range(2)]
        done = [jf.wait_done(j["id"], timeout=300) for j in (first, *rest)]
        assert [j["state"] for j in done] == ["succeeded"] * 3, done
        assert all(j["counts"] == {"total": 1, "succeeded": 1, "failed": 0} for j in done)

        grown = [n for n in gpu_nodes(head, alive=False) if n.started >= t0]
        assert len(grown) == 3
        third_up = max(n.started for n in grown)
        assert all(third_up < unix(j["started_at"]) for j in done[1:]), (third_up, [j["started_at"] for j in done])
        # every item held a GPU on one of those nodes, never on the CPU-only head
        with jf.farm.db.session() as s:
            ran_on = [e["node_id"] for e in s.scalars(select(JobEvent.data).where(JobEvent.type == "gpu_item"))]
        assert len(ran_on) == 3 and set(ran_on) <= {n.node_id for n in grown}

        # the queue drained: the farm withdrew its request, and the idle nodes went
        last_done = max(unix(j["finished_at"]) for j in done)
        wait_gpu_nodes(head, 0, timeout=180)
        gone = max(n.ended or 0 for n in gpu_nodes(head, alive=False) if n.started >= t0)
        requests = demand_requests(head, t0)
        asked = [gpus for _, gpus in requests]
        # the request grew while the three jobs were being submitted (a dispatcher tick may fall between two
        # submits), stood at three GPUs once, then only fell as the queue drained, to nothing; one call per change
        peak = asked.index(max(asked))
        assert max(asked) == 3 and asked[-1] == 0, requests
        assert asked[:peak + 1] == sorted(set(asked[:peak + 1])) and asked[peak:] == sorted(set(asked[peak:]), reverse=True), requests
        print(f"\n[autoscaling] 3 queued GPU jobs: first GPU node up {min(n.started for n in grown) - t0:.1f} s after submit, "
              f"third {third_up - t0:.1f} s; jobs 2 and 3 started {unix(done[1]['started_at']) - t0:.1f} / "
              f"{unix(done[2]['started_at']) - t0:.1f} s; 0 GPU nodes {gone - last_done:.1f} s after the last job finished "
              f"(idle timeout 6 s)")
    finally:
        jf.close()


def test_the_farms_gpu_cap_holds_shared_by_two_orgs_and_the_node_count_is_steady(
        fake_cluster: LocalRayHead, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    head = fake_cluster
    wait_gpu_nodes(head, 0, timeout=180)
    jf = gpu_farm(tmp_path, postgres_url, head, monkeypatch, max_running=8, max_gpus=2)
    jobs: dict[str, str] = {}  # job id → org
    try:
        t0 = time.time()
        spec = {"accelerator_type": ACCELERATOR, "delay_s": 1.0}
        for org in "abababab" + "aa":  # both orgs queue from the start; a has six jobs, b four
            jobs[jf.submit(org, kind=KIND, spec=spec)["id"]] = org
        samples: list[tuple[float, int, dict[str, list[str]]]] = []  # (time, GPU nodes alive, job states per org)
        deadline = time.monotonic() + 300
        while True:
            states = {org: [j["state"] for j in jf.clients[org].get("/v1/jobs", params={"limit": 100}).json()["data"]]
                      for org in ("a", "b")}
            samples.append((time.time(), len(gpu_nodes(head)), states))
            if sum(s == "succeeded" for org in states.values() for s in org) >= 3 or time.monotonic() > deadline:
                break  # GPUs have changed hands between jobs (and orgs) while the queue stayed above the cap
            time.sleep(0.5)
        assert sum(s == "succeeded" for org in samples[-1][2].values() for s in org) >= 3, samples[-1]

        counts = [n for _, n, _ in samples]
        seen = [(round(t - t0, 1), n, {org: "".join(x[0] for x in st) for org, st in states.items()}) for t, n, states in samples]
        assert max(counts) == 2, seen  # ten jobs queued, five nodes allowed by the node type: the farm asked for two
        steady = counts[counts.index(2):]
        assert steady == [2] * len(steady), seen  # once up, no node left or came while the queue was steady
        for _, _, states in samples:
            running = {org: sum(s in ("running", "cancel_requested") for s in st) for org, st in states.items()}
            assert sum(running.values()) <= 2, states
            if all("queued" in st for st in states.values()):
                assert max(running.values()) <= 1, states  # both orgs waiting: each holds one of the two GPUs
        requests = demand_requests(head, t0)
        asked = [gpus for _, gpus in requests]
        # never more than the cap; the request grew while the jobs were being submitted (each change asked once),
        # and once it stood at two nothing more was asked while the queue stayed above the cap
        assert max(asked) == 2 and asked[-1] == 2 and asked.count(2) == 1 and asked == sorted(asked), requests
        print(f"\n[autoscaling] cap 2 GPUs, 10 queued jobs of two orgs: 2 GPU nodes "
              f"{samples[counts.index(2)][0] - t0:.1f} s after submit, at most {max(counts)} in {len(samples)} samples "
              f"over {samples[-1][0] - t0:.1f} s, {len(requests)} request(s) to the autoscaler")
    finally:
        for job_id, org in jobs.items():
            jf.clients[org].post(f"/v1/jobs/{job_id}/cancel")
        jf.close()
